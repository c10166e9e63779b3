"""What the tests share and are not tests themselves (issue 23): the servers the tests put in front
of registries (:mod:`.faultproxy`, :mod:`.hostile`, :mod:`.tcprelay`, :mod:`.tokenservice`, on one
lifecycle: :mod:`.served`), the real registries with auth (:mod:`.authregistry`), images and
archives to publish (:mod:`.oci_images`, :mod:`.oci_archives`), LocalAI-shaped trees and LocalAI's
own files (:mod:`.localai_tree`, :mod:`.localai_scale`, :mod:`.localai_ref`), a Go module proxy
on disk (:mod:`.goproxy`), and the repository's paths (:mod:`.paths`)."""

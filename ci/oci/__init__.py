"""OCI images and registries: references, platforms, manifests (pure); the registry client, credentials, the blob cache, local registries and signing (adapters)."""

"""The Docker engine and BuildKit (adapters): the engine, the buildx builder, offline base images, disk headroom, ``docker buildx imagetools``."""

"""ocibuild: build OCI images from Dockerfiles, the way BuildKit does, without a daemon."""

__version__ = "0.1.0"

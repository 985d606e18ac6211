"""kubeload: a Kubernetes-native load-test operator with one shared auth token."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kubeload")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]

"""mtpkdot: privileged knowledge distillation for multimodal affect recognition.

Implements MT-PKDOT (multi-teacher privileged knowledge distillation with optimal transport) and the
methods it is compared with. See README.md for the quick start and docs/ for the internals.
"""

__version__ = "0.1.0"

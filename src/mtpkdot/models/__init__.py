"""All networks of the paper (Sec. IV-B, Fig. 3, Table I): backbones, fusions, adapters, T-Net, heads, student.

Importing this package registers the backbones (``BACKBONES``) and fusions (``FUSIONS``).
"""

from __future__ import annotations

from mtpkdot.models.adapters import Adapter
from mtpkdot.models.backbones import build_backbone, load_torchvision_weights, read_state_dict
from mtpkdot.models.describe import count_parameters, describe_models
from mtpkdot.models.fusion import build_fusion
from mtpkdot.models.heads import LinearHead
from mtpkdot.models.student import Student
from mtpkdot.models.tnet import TNet

__all__ = [
    "Adapter",
    "LinearHead",
    "Student",
    "TNet",
    "build_backbone",
    "build_fusion",
    "count_parameters",
    "describe_models",
    "load_torchvision_weights",
    "read_state_dict",
]

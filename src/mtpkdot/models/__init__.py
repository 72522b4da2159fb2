"""All networks of the paper (Sec. IV-B, Fig. 3, Table I): backbones, fusions, adapters, T-Net, heads, student.

Importing this package registers the backbones (``BACKBONES``) and fusions (``FUSIONS``); each declares
what the pipeline needs to feed it (:func:`input_ndim`, :func:`input_kwargs`, :func:`accepts_weights`,
:func:`takes_seq_len`).
"""

from __future__ import annotations

from mtpkdot.models.adapters import Adapter
from mtpkdot.models.backbones import (
    Backbone,
    accepts_weights,
    build_backbone,
    input_kwargs,
    input_ndim,
    load_torchvision_weights,
    read_state_dict,
    register_backbone,
)
from mtpkdot.models.describe import count_parameters, describe_models
from mtpkdot.models.fusion import build_fusion, takes_seq_len
from mtpkdot.models.heads import LinearHead
from mtpkdot.models.student import Student
from mtpkdot.models.tnet import TNet

__all__ = [
    "Adapter",
    "Backbone",
    "LinearHead",
    "Student",
    "TNet",
    "accepts_weights",
    "build_backbone",
    "build_fusion",
    "count_parameters",
    "describe_models",
    "input_kwargs",
    "input_ndim",
    "load_torchvision_weights",
    "read_state_dict",
    "register_backbone",
    "takes_seq_len",
]

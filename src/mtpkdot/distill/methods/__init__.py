"""The six registered student-training methods, one file each; importing this package registers them."""

from mtpkdot.distill.methods.cosine import CosinePKD
from mtpkdot.distill.methods.kl import KLPKD
from mtpkdot.distill.methods.mse import MSEPKD
from mtpkdot.distill.methods.mtpkdot import MTPKDOT
from mtpkdot.distill.methods.none import NoDistillation
from mtpkdot.distill.methods.pkdot import PKDOT

__all__ = ["KLPKD", "MSEPKD", "MTPKDOT", "PKDOT", "CosinePKD", "NoDistillation"]

"""Embedded synthetic datasets, written in the real on-disk layouts.

``synth_biovid`` writes the Biovid official layout (``samples.csv``, mp4 videos, tab-separated 512 Hz
biosignal CSVs with time in microseconds); ``synth_affwild2`` writes the ABAW layout (cropped-aligned
frame folders, ``valence,arousal`` annotation files with -5 gaps, raw videos with an AAC audio track,
one ``_left``/``_right`` pair sharing a raw video). The generative model is documented in docs/data.md;
its strengths are knobs, not tuned for any method. Everything is deterministic from ``seed``: each
subject (video) draws from its own generator seeded by ``(seed, index)``, so adding subjects does not
change the existing ones.

Modules: ``faces`` (the cartoon face renderer), ``biosignals`` (EDA, ECG, EMG), ``media`` (the video
writer), ``biovid`` and ``affwild2`` (one generator each), ``generate`` (what they share) and ``ensure``
(generate on first use).
"""

from __future__ import annotations

from mtpkdot.data.synthetic.affwild2 import synth_affwild2
from mtpkdot.data.synthetic.biosignals import SIGNAL_RATE
from mtpkdot.data.synthetic.biovid import BIOVID_CLASSES, BIOVID_INTENSITY, biovid_latent, synth_biovid
from mtpkdot.data.synthetic.ensure import ensure_generated
from mtpkdot.data.synthetic.faces import FaceParams, draw_face
from mtpkdot.data.synthetic.media import AUDIO_RATE, write_video

__all__ = [
    "AUDIO_RATE",
    "BIOVID_CLASSES",
    "BIOVID_INTENSITY",
    "SIGNAL_RATE",
    "FaceParams",
    "biovid_latent",
    "draw_face",
    "ensure_generated",
    "synth_affwild2",
    "synth_biovid",
    "write_video",
]

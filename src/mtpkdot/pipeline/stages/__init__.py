"""What each stage of one fold does differently (paper Sec. III, Alg. 1-2, Sec. IV-B), one module per stage.

The stages and their order are declared in :mod:`mtpkdot.pipeline.graph`; what every stage shares
(skip when done, seed, fit, select, test once, mark done) is :mod:`mtpkdot.pipeline.runner`. A trained
stage here only builds a :class:`~mtpkdot.pipeline.runner.Trainable` (modules, step, evaluation,
hooks); ``load_*`` read a finished stage's selected checkpoint for the stages after it. What several
stages share (labels, scoring, batching) is :mod:`mtpkdot.pipeline.stages.common`.
"""

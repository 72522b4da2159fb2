"""Fixtures shipped for users of the library: data to test a preparation or benchmark it against.

``photo_faces``: Biovid-layout videos of a real face photograph, with the true face box per frame.
"""

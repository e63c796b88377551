"""The gallery contract: what a gallery bundle is and how every part reads it.

The cloud side (``lookout.sync``) writes bundles; the device, search, evaluation and
the relay read them through this package only. See ``reader.GalleryReader``.
"""

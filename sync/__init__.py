"""The cloud side of galleries (part ``lookout.sync``): ingest people and photos, enrol them under
a jurisdiction policy, build and seal signed bundles (with deltas), publish them, audit and report.

- ``sources/``, ``records``  CSV/JSON manifests, identity folders, an HTTP API -> one record per photo
- ``enrol``                  per photo: policy, fetch, decode, detect, choose the face, quality, embed
- ``build``                  ``build_gallery``, ``build_gallery_from_folders``, ``update_gallery`` -> ``BuildReport``
- ``seal``                   write and sign a bundle folder (``seal_bundle``, ``write_delta``)
- ``publish``                a bundle folder -> a static publish folder devices pull from
- ``audit``, ``report``, ``threshold``, ``bench``, ``cli``

What a bundle is and how it is read (devices, search, the relay) is the core's
``lookout.gallery``; this part only writes it.
"""

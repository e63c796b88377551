"""The gallery contract: what a gallery bundle is and how every part reads it.

The cloud side (``lookout.sync``) writes bundles; the device, search, evaluation and
the relay read them through this package only. Modules, one idea each:

- ``format``    file names, the manifest (pydantic), ``BundleError``, ``load_index``
- ``verify``    signature, files, model and policy checks (``verify_bundle``, ``read_manifest``)
- ``reader``    ``GalleryReader`` (the protocol readers code against), ``Gallery``, ``Candidate``, ``load_bundle``
- ``delta``     ``DeltaDoc``, ``read_delta``, ``apply_delta`` (builder and device run the same code)
- ``index``     the HNSW index; ``metadata``: ``gallery.sqlite``; ``keys``: Ed25519; ``policy``: jurisdictions
- ``store``     the device's bundles: ``current``, ``previous``, staging (``BundleStore``)
- ``pull``      keeping a store current from a publish URL (``BundlePuller``)
- ``search``    search the faces of a photo (``lookout search``, the console)

The API, in short::

    from lookout.gallery.reader import load_bundle, GalleryReader, Candidate
    gallery = load_bundle(bundle_dir, public_key, expected_model_digest, policy, location=None)
    gallery.version, .policy_version, .model_name, .model_digest, .threshold, .dim, .purpose, .manifest
    gallery.search(vectors (N,D) float32, k=5) -> list[list[Candidate(person_id, name, score, photo_id)]]
    gallery.person(person_id) -> dict | None      # person_id, name, jurisdiction, department, attributes
    gallery.enrolled() -> (person id of each photo, vectors (M, D))

    from lookout.gallery.store import BundleStore      # store.current_dir(), previous_dir(), rollback()
    from lookout.gallery.pull import BundlePuller      # BundlePuller(url, store, public_key, digest, policy,
                                                       #   interval_s, on_swap=callback(Path), location=None)
    from lookout.gallery.policy import Policy          # Policy.load(path), Policy.default(), .decide(j, purpose)
    from lookout.gallery.search import search_image    # the `lookout search` flow

Scores are cosine similarities (inner products of unit embeddings) everywhere.
``gallery.sqlite`` in each bundle has ``persons(person_id, name, jurisdiction,
department, attributes JSON)``, ``photos`` and the ``labels`` view.
"""

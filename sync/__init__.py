"""Gallery and sync: ingest people and photos, enrol them under a jurisdiction policy, build
signed index bundles (with deltas), keep a device's copy current, search by photo.

Public API (stable; the device runtime and the relay code against it)::

    from lookout.gallery.format import load_bundle, BundleError, Gallery, Candidate
    gallery = load_bundle(bundle_dir, public_key, expected_model_digest, policy, location=None)
    gallery.version, .policy_version, .model_name, .model_digest, .threshold, .dim, .purpose
    gallery.search(vectors (N,D) float32, k=5) -> list[list[Candidate(person_id, name, score, photo_id)]]
    gallery.person(person_id) -> dict | None      # person_id, name, jurisdiction, department, attributes
    gallery.count_persons, gallery.count_photos, gallery.set_policy(policy)

    from lookout.gallery.pull import BundleStore, BundlePuller
    store = BundleStore(root); store.current_dir(); store.previous_dir(); store.rollback()
    puller = BundlePuller(url, store, public_key, expected_model_digest, policy, interval_s,
                          on_swap=callback(Path), location=None)
    puller.pull_once() -> bool; puller.start(); puller.stop()

    from lookout.gallery.policy import Policy
    Policy.load(path), Policy.default(), policy.allows(jurisdiction, purpose) -> bool,
    policy.decide(jurisdiction, purpose) -> Decision(allowed, reason), policy.version

    from lookout.sync.build import build_gallery, build_gallery_from_folders, update_gallery, BuildReport
    build_gallery_from_folders(folder, out_dir, private_key, pipeline, policy=None, people=None) -> BuildReport

    from lookout.gallery.keys import generate_keys        # (private_pem_path, public_pem_path)
    from lookout.sync.publish import publish           # bundle folder -> static publish folder
    from lookout.gallery.search import search_image       # the `lookout search` flow

Scores are cosine similarities (inner products of unit embeddings) everywhere.
``gallery.sqlite`` in each bundle has ``persons(person_id, name, jurisdiction,
department, attributes JSON)``, ``photos`` and the ``labels`` view.
"""

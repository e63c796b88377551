"""The model store as every part reads it: which models exist (``catalog``), what a converted
model is (``manifest``), and the local cache that opens models after checking their digests
(``store``). Fetching and converting models is the ``lookout.models`` part's job."""

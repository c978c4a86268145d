"""The use cases, one module each: what a command (or a service's job) asks the product to do.

Each function takes plain values (paths, names, numbers), runs the stages below it and returns a value the
caller prints or serves; the CLI (:mod:`mosaicrec.cli`) only parses options, calls one of these and prints,
and the service's retrain jobs call :func:`mosaicrec.app.training.train_servable` as the CLI does.

* :mod:`.experiment` — run an experiment config (split, tune, train, evaluate, report);
* :mod:`.ingest` — validate data files and write them to the store, with their like rule;
* :mod:`.encode` — encode a catalog's content through the cache;
* :mod:`.training` — train a servable model on the store (or a snapshot of it) with its record;
* :mod:`.listing` — open the serving pipeline over a store, for lists, similar items and search;
* :mod:`.export` — every user's list through that pipeline, in one process or on Ray;
* :mod:`.server` — a running service: keys, media, content encoded in the background, the HTTP app;
* :mod:`.jobs` — retraining beside a running service; :mod:`.retrain` — asking a service to retrain;
* :mod:`.ope` — off-policy evaluation of target models on the service's impression log;
* :mod:`.demo` — the demo run on a built-in real dataset.
"""

"""Commands over a running service: serve, retrain."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

from mosaicrec.cli import ModelOpt, Params, Repeat, StoreOpt, TextFields, _admin_key, _opt, _say, app, err
from mosaicrec.errors import MosaicError


@app.command()
def serve(
    model_dir: ModelOpt,
    store: StoreOpt = None,
    host: Annotated[str, _opt("interface to listen on")] = "127.0.0.1",
    port: Annotated[int, _opt("port", min=1, max=65535)] = 8000,
    api_key_file: Annotated[Optional[Path], _opt("file of API keys, one KEY:read, KEY:write or KEY:admin a line "
                                                 "[also: $MOSAICREC_API_KEYS, comma-separated]")] = None,
    api_key: Annotated[Repeat, _opt("KEY:kind (repeatable); visible to other local users in `ps`: prefer "
                                    "--api-key-file")] = None,
    encoder: Annotated[Repeat, _opt("content NAME=ENCODER for similar items, search and new items [default: the "
                                    "model's own encoders, else each modality's default]")] = None,
    text_fields: TextFields = None,
    rate_limit: Annotated[float, _opt("requests per second per key")] = 1000.0,
    retrieval: Annotated[str, _opt("auto | exact | ann (HNSW over the model's item vectors; auto: from 50,000 "
                                   "items)")] = "auto",
    content_file: Annotated[Optional[Path], _opt("item content .npz written by `mosaicrec encode` [default: the "
                                                 "model's, else the store's content.npz; items either lacks are "
                                                 "encoded in the background]", "--content")] = None,
    no_content: Annotated[bool, _opt("serve without item content (no similar items, search or explanations)",
                                     "--no-content")] = False,
    media_root: Annotated[Optional[Path], _opt("folder that item media paths sent to the API must lie in; uploads "
                                               "are kept in its uploads/ [default: $MOSAICREC_HOME/media]")] = None,
    media_read_root: Annotated[Optional[list[Path]], _opt("a further folder whose media may be referenced and "
                                                          "served (e.g. a dataset's posters), never written "
                                                          "(repeatable)")] = None,
    model_root: Annotated[Optional[Path], _opt("folder that POST /admin/reload may load models from and "
                                               "retraining writes to [default: the --model folder's parent]")]
        = None,
    max_media_mb: Annotated[float, _opt("largest image or audio file accepted, MB", min=0.01)] = 25.0,
    max_video_mb: Annotated[float, _opt("largest video file accepted, MB", min=0.01, max=100_000)] = 200.0,
    public_docs: Annotated[bool, _opt("serve /docs and /openapi.json without a key")] = False,
    bandit: Annotated[Optional[str], _opt("let a contextual bandit (linucb | thompson | epsilon-greedy) pick lists "
                                          "from the model's candidates and learn from rewards: events whose "
                                          "context has the list's request_id")] = None,
    bandit_share: Annotated[float, _opt("share of requests the bandit serves", min=0.0, max=1.0)] = 1.0,
    bandit_scenario: Annotated[Repeat, _opt("only these scenarios get the bandit (repeatable) [default: all]")]
        = None,
    explore: Annotated[Optional[str], _opt("draw lists at random from the model's own scores, each item logged "
                                           "with its probability at its position, so that the log can measure "
                                           "other models (`mosaicrec ope`): epsilon-greedy | plackett-luce")]
        = None,
    explore_epsilon: Annotated[float, _opt("epsilon-greedy: share of exploring lists drawn at random", min=0.0,
                                           max=1.0)] = 0.1,
    explore_temperature: Annotated[float, _opt("plackett-luce: softmax temperature over standardised scores")] = 1.0,
    explore_candidates: Annotated[int, _opt("draw from the model's best N allowed items (0: all of them, at most "
                                            "10,000)", min=0)] = 100,
    explore_share: Annotated[float, _opt("share of requests that explore", min=0.0, max=1.0)] = 1.0,
    kg: Annotated[Optional[str], _opt("an item knowledge graph for explanation paths (\"both are directed by "
                                      "Y\"): recbole-ml100k, attributes (the items' crew, cast and genres), or a "
                                      "folder with one .kg and one .link file")] = None,
    report: Annotated[Optional[Path], _opt("an evaluation's output folder (`mosaicrec evaluate --out`), shown on "
                                           "the web page /ui")] = None,
    replicas: Annotated[int, _opt("run N replicas as a Ray Serve deployment (writes go through one writer and "
                                  "reach every replica) [default: 0, one embedded process]", min=0, max=1024)] = 0,
    ray_address: Annotated[Optional[str], _opt("with --replicas: join this Ray cluster (e.g. auto, "
                                               "ray://head:10001) [default: a local one]")] = None,
    ingress: Annotated[str, _opt("with --replicas: serve (Ray Serve's proxy spreads requests over the cluster) | "
                                 "reuseport (each replica serves the port itself, the kernel spreads "
                                 "connections over one machine's replicas: no proxy)")] = "serve",
) -> None:
    """Serve recommendations, similar items, search, new items, events and erasure over HTTP, and a web page
    (http://HOST:PORT/ui). Starts at once; content the model did not bring is encoded in the background."""
    import uvicorn

    from mosaicrec.app.server import ServeOptions, build_server

    if api_key:
        err.print("[yellow]warning:[/yellow] keys given with --api-key are visible to other users in `ps`; "
                  "use --api-key-file or $MOSAICREC_API_KEYS", highlight=False)
    opts = ServeOptions(model_dir, store, api_key_file, api_key, encoder, text_fields, rate_limit, retrieval,
                        content_file, no_content, media_root, list(media_read_root or ()), model_root, max_media_mb,
                        public_docs, bandit, bandit_share, bandit_scenario, kg, report, explore, explore_epsilon,
                        explore_temperature, explore_candidates, explore_share, max_video_mb=max_video_mb)
    if replicas:
        return _serve_replicas(opts, replicas, ray_address, host, port, ingress)
    if ray_address:
        raise MosaicError("--ray-address needs --replicas N")
    server = build_server(opts, console=err)
    err.print(server.describe(host, port), highlight=False)
    uvicorn.run(server.app, host=host, port=port, log_level="warning", access_log=False)


def _serve_replicas(opts, replicas: int, ray_address: str | None, host: str, port: int, ingress: str) -> None:
    import signal
    import time

    from mosaicrec.app.replicas import check_replicas, start_replicas
    from mosaicrec.data.cluster import ray_session

    def stop(*_):
        raise KeyboardInterrupt

    check_replicas(opts, replicas, ingress)
    signal.signal(signal.SIGTERM, stop)  # a supervisor's stop removes the deployment too
    with ray_session(ray_address):
        running = start_replicas(opts, replicas, host, port, console=err, ingress=ingress)
        err.print(running.describe(), highlight=False)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
            if ingress == "serve":
                from ray import serve

                serve.shutdown()


@app.command()
def retrain(
    server: Annotated[str, _opt("the running service, e.g. http://127.0.0.1:8000")],
    api_key_file: Annotated[Optional[Path], _opt("file holding an admin key (KEY:admin)")] = None,
    model: Annotated[Optional[str], _opt("model to train [default: the served one]")] = None,
    param: Params = None,
    wait: Annotated[bool, _opt("wait until the new model serves")] = True,
) -> None:
    """Retrain a running service's model on a snapshot of its store and swap it in (the store stays open
    for writes throughout). The key comes from the file or $MOSAICREC_API_KEYS (an admin one)."""
    from mosaicrec.app.encode import parse_params
    from mosaicrec.app.retrain import retrain as run

    admin = _admin_key(server, api_key_file, "retrain")
    with err.status("asking the service to retrain") as status:
        def show(job: dict) -> None:
            status.update(f"retrain job {job['job_id']} ({job['model']}): {job['state']}")

        job = run(server, admin, model, parse_params(param) if param else None, wait=wait, on_state=show)
    _say(f"retrain job {job['job_id']} ({job['model']}) {job['state']}: {job.get('message') or ''}")

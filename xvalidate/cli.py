"""The `xvalidate` command.

Exit codes: 0 the models agree, 1 they diverge, 2 an error (bad input, failed conversion).
Errors print one line; --debug prints the traceback too.
"""
from __future__ import annotations

import functools
import json
import signal
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from xvalidate.console import EXIT_DIVERGE, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_PASS  # noqa: F401 (re-exported)
from xvalidate.console import Progress as _Progress, stderr_console as _stderr_console, stdout_console
from xvalidate.defaults import DEFAULT_DST, DEFAULT_ROUTES, DEFAULT_SRC, DEFAULT_VIA
from xvalidate.errors import OptionError, XValidateError


@functools.lru_cache(maxsize=None)
def _names(kind: str) -> str:
    """The registered adapters or routes (built-ins and plugins' entry points), for help texts."""
    from xvalidate.registry import adapter_names, route_names

    return ", ".join(adapter_names() if kind == "adapters" else route_names())


def _interrupt(signum: int, frame: Any) -> None:
    """Ctrl-C: kill the workers first (threads waiting on them return at once), then unwind."""
    from xvalidate.worker import kill_workers

    kill_workers()
    raise KeyboardInterrupt


def _guard(fn: Callable) -> Callable:
    """Turn errors into one line and exit code 2 (a traceback only with --debug)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = click.get_current_context().find_root().params.get("debug", False)
        signal.signal(signal.SIGINT, _interrupt)
        try:
            return fn(*args, **kwargs)
        except XValidateError as exc:
            if debug:
                traceback.print_exc()
                details = getattr(exc, "details", None)
                if details:
                    click.echo(details, err=True)
            click.echo(f"error: {exc}", err=True)
        except KeyboardInterrupt:
            click.echo("interrupted: workers stopped, no report written", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as exc:  # a bug, not bad input: still one line unless --debug
            if debug:
                traceback.print_exc()
            click.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(EXIT_ERROR)
    return wrapper


def _tolerance_file(path: str | None) -> dict | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise OptionError(f"--tolerances {path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise OptionError(f"--tolerances {path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise OptionError(f"--tolerances {path}: expected a JSON object of layer name or pattern -> tolerance")
    return data


def _finish(report, html: str | None, json_path: str | None, all_rows: bool) -> None:
    from xvalidate.report.text import render

    render(report, stdout_console(), all_rows=all_rows)
    if json_path:
        click.echo(f"JSON report: {report.to_json(json_path)}")
    if html:
        click.echo(f"HTML report: {report.to_html(html)}")
    sys.exit(EXIT_PASS if report.passed else EXIT_DIVERGE)


def _route_flags(fn: Callable) -> Callable:
    """A flag for every option the registered routes declare (--opset, --input-shape...), plus the
    generic --route-option KEY=VALUE."""
    from xvalidate.registry import route_options

    for name, (_, help_text) in sorted(route_options().items(), reverse=True):
        fn = click.option("--" + name.replace("_", "-"), name, default=None, help=help_text)(fn)
    return click.option("--route-option", "route_option", multiple=True, metavar="KEY=VALUE",
                        help="A route option (repeatable), e.g. --route-option opset=13.")(fn)


def _route_options(flags: dict[str, Any], pairs: tuple[str, ...]) -> dict[str, Any]:
    """The route options of the declared flags and of --route-option KEY=VALUE, in their declared types."""
    from xvalidate.registry import route_options
    from xvalidate.routes.base import parse_option

    declared = route_options()
    given = {name: value for name, value in flags.items() if value is not None}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip()):
            raise OptionError(f"--route-option: expected KEY=VALUE, got {pair!r}")
        given[key.strip().replace("-", "_")] = value.strip()
    return {name: parse_option(name, declared.get(name, ("str", ""))[0], value) for name, value in given.items()}


def _common(fn: Callable) -> Callable:
    options = [
        click.option("--input", "inputs", type=click.Path(), help="Input .npy array, .npz of named inputs, or image file/directory, in the source model's layout."),
        click.option("--batch", type=int, default=1, show_default=True, help="Samples of random input when --input is not given."),
        click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input."),
        click.option("--preprocess", default="unit", show_default=True, help="Image preprocessing: none, unit, tf, caffe, torch."),
        click.option("--atol", type=float, help="Absolute tolerance (default in docs/usage.md)."),
        click.option("--rtol", type=float, help="Relative tolerance."),
        click.option("--tolerances", "tolerance_file", type=click.Path(), help="JSON file of per-layer tolerances."),
        click.option("--memory-budget", type=float, help="Bytes of activations per chunk of the batch (both sides)."),
        click.option("--html", type=click.Path(), help="Write a self-contained HTML report here."),
        click.option("--json", "json_path", type=click.Path(), help="Write the JSON report here."),
        click.option("--all", "all_rows", is_flag=True, help="Show every layer, not only the worst."),
        click.option("--isolate", is_flag=True, help="Also run each destination layer on the source's values of its "
                                                     "inputs: every faulty layer is a root, not only the first."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _safety(fn: Callable) -> Callable:
    """--trust-model (passed on as trust_model) and --timeout (applied to the workers here)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, timeout: float | None = None, **kwargs: Any) -> Any:
        if timeout is not None:
            from xvalidate.worker import set_timeout
            set_timeout(timeout)
        return fn(*args, **kwargs)

    wrapper = click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
                           help="Seconds a worker may spend on one step before it is stopped "
                                "(default 600, or $XVALIDATE_WORKER_TIMEOUT).")(wrapper)
    return click.option("--trust-model", is_flag=True,
                        help="Load model files that run code they carry (Keras Lambda layers): "
                             "only files you trust (docs/security.md).")(wrapper)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="xvalidate")
def main(debug: bool) -> None:
    """Check a neural-network conversion layer by layer."""


@main.command()
@click.argument("src_model", type=click.Path())
@click.argument("dst_model", type=click.Path())
@click.option("--src", default=DEFAULT_SRC, show_default=True,
              help=f"Adapter of SRC_MODEL: {_names('adapters')} (a saved .xvr names its own).")
@click.option("--dst", default=DEFAULT_DST, show_default=True,
              help=f"Adapter of DST_MODEL: {_names('adapters')} (a saved .xvr names its own).")
@click.option("--layer-map", type=click.Path(), help="JSON file {source layer: destination layer}.")
@_common
@_safety
@_guard
def compare(src_model, dst_model, src, dst, layer_map, inputs, batch, seed, preprocess, atol, rtol,
            tolerance_file, memory_budget, html, json_path, all_rows, isolate, trust_model):
    """Compare two models you already have (e.g. a Keras model and your Gluon port). Either may be a
    result saved by `capture --save` (.xvr): its adapter and input come from the file."""
    import xvalidate

    _check_saved_sides(src_model, dst_model, src, dst)
    with _Progress(sys.stderr.isatty()) as progress:
        report = xvalidate.compare(src_model, dst_model, src=src, dst=dst, inputs=inputs, layer_map=layer_map,
                                   atol=atol, rtol=rtol, tolerances=_tolerance_file(tolerance_file), batch=batch,
                                   seed=seed, preprocess=preprocess, memory_budget=memory_budget, progress=progress,
                                   trust_model=trust_model, isolate=isolate)
    _finish(report, html, json_path, all_rows)


def _check_saved_sides(src_model: str, dst_model: str, src: str, dst: str) -> None:
    """A saved side (.xvr) brings its adapter and its input: a --src/--dst naming another adapter, and
    --batch or --seed, are errors rather than silently ignored."""
    from click.core import ParameterSource

    from xvalidate.saved import SavedResult, is_saved

    ctx = click.get_current_context()
    given = [name for name in ("src", "dst", "batch", "seed") if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE]
    sides = [(model, option, name) for model, option, name in ((src_model, "src", src), (dst_model, "dst", dst))
             if is_saved(model)]
    for model, option, name in sides:
        if option in given:
            with SavedResult(model) as result:
                if result.adapter != name:
                    raise OptionError(f"--{option} {name}: {model} was captured with adapter {result.adapter}; "
                                      f"a saved side needs no --{option}")
    for option in ("batch", "seed"):
        if sides and option in given:
            raise OptionError(f"--{option}: {sides[0][0]} is a saved result, compared on the input saved with it; "
                              f"omit --{option}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--src", default=DEFAULT_SRC, show_default=True, help=f"Adapter of MODEL: {_names('adapters')}.")
@click.option("--dst", default=DEFAULT_DST, show_default=True, help=f"Adapter to convert to: {_names('adapters')}.")
@click.option("--via", default=DEFAULT_VIA, show_default=True, help=f"Conversion route: {_names('routes')}.")
@click.option("--keep", type=click.Path(), help="Copy the conversion's files (IR, code, weights) here.")
@click.option("--no-cache", is_flag=True, help="Convert again even if a cached conversion exists.")
@_route_flags
@_common
@_safety
@_guard
def validate(model, src, dst, via, keep, no_cache, route_option, inputs, batch, seed, preprocess, atol, rtol,
             tolerance_file, memory_budget, html, json_path, all_rows, isolate, trust_model, **flags):
    """Convert MODEL from --src to --dst through --via and compare the two layer by layer."""
    import xvalidate

    route_options = _route_options(flags, route_option)
    with _Progress(sys.stderr.isatty()) as progress:
        report = xvalidate.validate(model, src=src, dst=dst, via=via, inputs=inputs, atol=atol, rtol=rtol,
                                    tolerances=_tolerance_file(tolerance_file), keep=keep, cache=not no_cache,
                                    batch=batch, seed=seed, preprocess=preprocess, memory_budget=memory_budget,
                                    route_options=route_options, progress=progress, trust_model=trust_model,
                                    isolate=isolate)
    _finish(report, html, json_path, all_rows)


@main.command()
@click.argument("model", type=click.Path())
@click.option("--src", default=DEFAULT_SRC, show_default=True, help=f"Adapter of MODEL: {_names('adapters')}.")
@click.option("--dst", default=DEFAULT_DST, show_default=True, help=f"Adapter to convert to: {_names('adapters')}.")
@click.option("--via", "routes", default=",".join(DEFAULT_ROUTES), show_default=True,
              help=f"Comma-separated routes to compare, of: {_names('routes')}.")
@click.option("--no-cache", is_flag=True, help="Convert again even if cached conversions exist.")
@click.option("--input", "inputs", type=click.Path(), help="Input .npy array, .npz of named inputs, or images, in the source's layout.")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--html", type=click.Path(), help="Write a self-contained HTML comparison here.")
@click.option("--json", "json_path", type=click.Path(), help="Write the JSON comparison here.")
@_safety
@_guard
def routes(model, src, dst, routes, no_cache, inputs, batch, seed, html, json_path, trust_model):
    """Validate MODEL through several conversion routes and compare them side by side."""
    import xvalidate
    from xvalidate.report.routes import render_comparison

    via = tuple(r.strip() for r in routes.split(",") if r.strip())
    with _Progress(sys.stderr.isatty()) as progress:
        comparison = xvalidate.compare_routes(model, src=src, dst=dst, via=via, inputs=inputs, cache=not no_cache,
                                              batch=batch, seed=seed, progress=progress, trust_model=trust_model)
    render_comparison(comparison, stdout_console())
    if json_path:
        click.echo(f"JSON report: {comparison.to_json(json_path)}")
    if html:
        click.echo(f"HTML report: {comparison.to_html(html)}")
    sys.exit(EXIT_PASS if comparison.passed else EXIT_DIVERGE)


@main.command()
@click.argument("models", nargs=-1, required=True, type=click.Path())
@click.option("--src", default=None, help="Adapter of every MODEL (default: inferred from each file's extension).")
@click.option("--dst", required=True, help="Adapter to convert to (e.g. mxnet).")
@click.option("--routes", "routes", required=True,
              help="Comma-separated routes (e.g. mmdnn,onnx); ROUTE:DST sends one route to another destination.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where cells run. local: a process pool; ray: Ray tasks (pip install 'xvalidate[ray]').")
@click.option("--workers", type=int, default=1, show_default=True, help="Cells run at once (local processes, Ray CPUs).")
@click.option("--address", help="With --executor ray: the cluster to join ('auto': the one on this machine); "
                                "without it a local cluster is started and stopped.")
@click.option("--out", required=True, type=click.Path(), help="Output folder: sweep.sqlite, index.html, cells/.")
@click.option("--input", "inputs", multiple=True, type=click.Path(),
              help="An input file (repeatable): each is an input set, in the source model's layout.")
@click.option("--seeds", help="Comma-separated seeds of random input sets (default 0 when no --input).")
@click.option("--batch", type=int, default=1, show_default=True, help="Samples of each random input set.")
@click.option("--atol", type=float, help="Absolute tolerance.")
@click.option("--rtol", type=float, help="Relative tolerance.")
@click.option("--tolerances", "tolerance_file", type=click.Path(), help="JSON file of per-layer tolerances.")
@click.option("--no-cache", is_flag=True, help="Convert again even if cached conversions exist.")
@click.option("--redo", is_flag=True, help="Run every cell again, even those the folder has recorded.")
@_safety
@_guard
def sweep(models, src, dst, routes, executor, workers, address, out, inputs, seeds, batch, atol, rtol,
          tolerance_file, no_cache, redo, trust_model):
    """Validate many MODELS x routes x input sets; resumable; writes OUT/index.html. Exit code: the worst cell's."""
    from xvalidate import worker
    from xvalidate.sweep import sweep as run_sweep

    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()] if seeds else []
    except ValueError:
        raise OptionError(f"--seeds: expected comma-separated integers, got {seeds!r}") from None
    with _Progress(sys.stderr.isatty()) as progress:
        result = run_sweep(list(models), dst, routes, out=out, src=src, inputs=inputs, seeds=seed_list, batch=batch,
                           executor=executor, workers=workers, address=address, redo=redo, progress=progress,
                           atol=atol, rtol=rtol, tolerances=_tolerance_file(tolerance_file), cache=not no_cache,
                           trust_model=trust_model, timeout=worker.DEFAULT_TIMEOUT)
    counts = {s: sum(r["status"] == s for r in result.records) for s in ("PASS", "FAIL", "ERROR")}
    click.echo(f"{len(result.records)} cells: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['ERROR']} ERROR "
               f"({result.ran} run, {result.skipped} recorded before)")
    for r in result.records:
        if r["status"] != "PASS":
            click.echo(f"  {r['status']} {Path(r['model']).name} via {r['via']} -> {r['dst']} [{r['input_set']}]: "
                       f"{r['error'] or r['reason'] or ''}")
    click.echo(f"matrix: {result.matrix}")
    sys.exit(result.exit_code)


@main.command()
@click.option("--model", default="ResNet50", show_default=True,
              help="A keras.applications model (random weights) or seed2_cnn / resnet_block.")
@click.option("--via", default=DEFAULT_VIA, show_default=True, help=f"Conversion route: {_names('routes')}.")
@click.option("--out", default="xvalidate-demo", show_default=True, type=click.Path(), help="Directory for the model and reports.")
@click.option("--all", "all_rows", is_flag=True, help="Show every layer.")
@_guard
def demo(model, via, out, all_rows):
    """Build a model in code (no downloads), validate keras -> mxnet and write an HTML report."""
    from xvalidate.demo import run_demo

    run_demo(model, via, Path(out), all_rows, progress_enabled=sys.stderr.isatty())


@main.command()
@click.argument("model", type=click.Path())
@click.option("--adapter", "name", required=True, help=f"Adapter of MODEL: {_names('adapters')}.")
@click.option("--input", "inputs", type=click.Path(), help="Input .npy array, .npz of named inputs, or images (random when absent).")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--layers", help="Comma-separated layer names (default: every layer).")
@click.option("--out", type=click.Path(), help="Save the outputs to this .npz file.")
@click.option("--save", type=click.Path(), help="Save a result to compare later: a .xvr file of every output, the "
                                                "input, the layers and the environment (docs/saved-results.md).")
@click.option("--memory-budget", type=float, help="With --save: bytes of activations per chunk of the batch.")
@_safety
@_guard
def capture(model, name, inputs, batch, seed, layers, out, save, memory_budget, trust_model):
    """Capture every layer's output of MODEL in one forward pass (optionally saved as .npz or .xvr)."""
    if save:
        return _capture_saved(model, name, inputs, batch, seed, layers, out, save, memory_budget, trust_model)
    import xvalidate

    from xvalidate.api import checked_source
    from xvalidate.inputs import load_input_batch
    from xvalidate.worker import get_worker

    source = checked_source(name, model)
    get_worker(name).set_trust_model(trust_model)
    x, _ = load_input_batch(inputs, get_worker(name).inputs_info(source), batch=batch, seed=seed)
    shapes = ", ".join(str(tuple(a.shape)) for a in x.values())
    x = next(iter(x.values())) if len(x) == 1 else x
    outputs = xvalidate.run(name, source, x, [n for n in layers.split(",") if n] if layers else None,
                            trust_model=trust_model)
    total = sum(a.nbytes for a in outputs.values())
    click.echo(f"{len(outputs)} layer outputs, {total / 1e6:.1f} MB, input {shapes}")
    if out:
        from xvalidate.report.files import save_npz_atomic

        saved = save_npz_atomic(out if out.endswith(".npz") else out + ".npz", outputs)
        click.echo(f"saved to {saved}")


def _capture_saved(model, name, inputs, batch, seed, layers, out, save, memory_budget, trust_model) -> None:
    """`capture --save`: the batch in chunks, each written to the .xvr file before the next runs."""
    from xvalidate.saved import SUFFIX
    from xvalidate.saved.capture import save_capture

    if out:
        raise OptionError("--out and --save: give one (--save writes the outputs, and more, chunk by chunk)")
    path = save if save.lower().endswith(SUFFIX) else save + SUFFIX
    with _Progress(sys.stderr.isatty()) as progress:
        summary = save_capture(model, path, name, inputs, layers=[n for n in layers.split(",") if n] if layers else None,
                               batch=batch, seed=seed, memory_budget=memory_budget, progress=progress,
                               trust_model=trust_model)
    click.echo(f"{summary['tensors']} layer outputs of {summary['samples']} samples, {summary['bytes'] / 1e6:.1f} MB "
               f"in {summary['chunks']} chunk(s), {summary['seconds']['total']:.1f} s")
    parameters = summary.get("parameters")
    if parameters:
        click.echo(f"parameters of {parameters['tensors']} layer(s): {parameters['arrays']} array(s), "
                   f"{parameters['bytes'] / 1e6:.1f} MB")
    click.echo(f"saved to {summary['path']}")


@main.command()
@click.argument("model", type=click.Path())
@click.option("--adapter", "name", required=True, help=f"Adapter of MODEL: {_names('adapters')}.")
@_safety
@_guard
def layers(model, name, trust_model):
    """List MODEL's capturable layers: name, op, kinds, output shape (names for --layer-map)."""
    from rich.table import Table

    from xvalidate.api import checked_source
    from xvalidate.worker import get_worker

    source = checked_source(name, model)
    table = Table(header_style="bold")
    for column in ("#", "name", "op", "kinds", "shape", "layout"):
        table.add_column(column, overflow="fold")
    get_worker(name).set_trust_model(trust_model)
    infos = get_worker(name).layers(source)
    for i, info in enumerate(infos):
        shape = "-" if info.shape is None else str(tuple(info.shape))
        table.add_row(str(i), info.name, info.op, " ".join(info.kinds), shape, info.layout)
    stdout_console().print(table)


@main.command(name="adapters")
def list_adapters() -> None:
    """List the registered adapters and routes."""
    import xvalidate
    from xvalidate.registry import reachable

    click.echo("adapters: " + ", ".join(xvalidate.adapters()))
    click.echo("routes:   " + ", ".join(xvalidate.route_names()))
    click.echo("reachable (src -> dst via route):")
    for src, dst, via in reachable():
        click.echo(f"  {src} -> {dst} via {via}")


@main.group(name="env")
def env_group() -> None:
    """Worker environments: venvs of their own for routes whose packages clash with this one's."""


@env_group.command(name="create")
@click.argument("name")
@click.option("--force", is_flag=True, help="Delete the environment and create it again.")
@_guard
def env_create(name, force):
    """Create worker environment NAME (e.g. keras-mxnet) now; otherwise it is created on first use."""
    from xvalidate import environments

    env = environments.environment_named(name)
    if environments.is_ready(env) and not force:
        click.echo(f"{name}: ready in {env.path} (--force creates it again)")
        return
    with _stderr_console().status(f"creating worker environment {name} (pip install {len(env.requirements)} "
                                  f"pinned packages)"):
        python = environments.create(env, force=force, report=lambda line: None)
    click.echo(f"{name}: created in {env.path} ({environments.creation_seconds(env):.0f} s); Python {python}")


@env_group.command(name="list")
def env_list() -> None:
    """List the worker environments routes and adapters declare, and whether each is created."""
    from xvalidate import environments

    for name, env in sorted(environments.declared_environments().items()):
        state = "ready" if environments.is_ready(env) else "not created"
        click.echo(f"{name}: {state}, {env.path} ({', '.join(env.requirements)})")


if __name__ == "__main__":
    main()

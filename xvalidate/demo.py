"""`xvalidate demo`: build a Keras model in code (random weights, randomized BatchNorm
statistics, seeded; nothing is downloaded), validate keras -> mxnet and write reports."""
from __future__ import annotations

import sys
from pathlib import Path


def run_demo(model: str, via: str, out: Path, all_rows: bool = False, progress_enabled: bool = False) -> None:
    """Build `model`, validate it through route `via`, print the table, write report.html/json in `out`."""
    import xvalidate
    from xvalidate.console import EXIT_DIVERGE, EXIT_PASS, Progress, stdout_console
    from xvalidate.errors import OptionError
    from xvalidate.models.keras_zoo import APPLICATIONS, BUILDERS
    from xvalidate.report.text import render
    from xvalidate.worker import get_worker

    if model not in APPLICATIONS and model not in BUILDERS:
        raise OptionError(f"--model: unknown {model!r}; expected one of {', '.join(APPLICATIONS + tuple(BUILDERS))}")
    console = stdout_console()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionError(f"--out: cannot create {out} ({exc.strerror})") from None
    path = out / f"{model}.h5"
    if not path.exists():  # built once; the same file then hits the conversion cache
        console.print(f"building {model} in code (weights=None, randomized BatchNorm statistics, seed 0)...")
        get_worker("keras").call("xvalidate.models.keras_zoo:save", model, str(path))
    with Progress(progress_enabled) as progress:
        report = xvalidate.validate(str(path), src="keras", dst="mxnet", via=via, progress=progress)
    render(report, console, all_rows=all_rows)
    html = report.to_html(str(out / "report.html"))
    report.to_json(str(out / "report.json"))
    console.print(f"HTML report: {html}")
    sys.exit(EXIT_PASS if report.passed else EXIT_DIVERGE)

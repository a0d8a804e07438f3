"""The run report: ``<run>/report.md`` with every stage's numbers and the plots under ``<run>/report/``
(docs/report.md).

Importing this package is light (no matplotlib): names load on first use.

* :mod:`gr2.report.build` — ``build_report(run_path)``: write report.md (and the plots), return its path
* :mod:`gr2.report.plots` — ``make_plots``, ``metric_bars``, ``training_curves`` and one plot per stage
* :mod:`gr2.report.sections` — one Markdown renderer per section, in pipeline order
* :mod:`gr2.report.cli` — ``add_report_parser(subparsers)`` for ``gr2 report``
"""

from __future__ import annotations

from gr2._lazy import lazy_exports

_EXPORTS = {
    "add_report_parser": "cli",
    "build_report": "build",
    "make_plots": "plots",
    "metric_bars": "plots",
    "training_curves": "plots",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = ["add_report_parser", "build_report", "make_plots", "metric_bars", "training_curves"]

"""``flowcraft ui``: a web view of the runs of one backend namespace (the ``ui`` extra).

A Starlette application (:func:`create_app`) over one :class:`~flowcraft.core.Client`: the
runs listed newest first with a status filter and paging, and a run's page with its blueprint
drawn by Mermaid (each node coloured by its state), its node instances (status, attempt,
input, output, error, retry timer) and, behind ``--allow-actions``, cancel and resume. The run
page polls ``/api/runs/ID`` while the run is live. Mermaid's browser bundle ships in the wheel
(fetched by the build hook, ``hatch_build.py``), so the view works offline.

Modules: ``view`` (what a run's page shows, pure), ``pages`` (the HTML, pure, every run value
escaped), ``app`` (routes and action checks), ``static`` (``ui.js``, ``ui.css``, Mermaid).
"""

from flowcraft.core._ui.app import MERMAID_JS, create_app

__all__ = ["MERMAID_JS", "create_app"]

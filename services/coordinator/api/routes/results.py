"""A finished run's results: as JSON, and as the HTML report."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from ...report.render import ReportRun, render_report
from ...run.result_schemas import RunResults
from ..deps import Run
from ..errors import ResultsNotReady, responses

router = APIRouter(prefix="/v1/runs/{run_id}", tags=["results"])


@router.get("/results", response_model=RunResults, responses=responses(404, 409))
async def get_results(run: Run) -> RunResults:
    """Everything the report shows, as JSON: rounds, held-out conditions with error bars, what worked,
    forgetting, examples and the reproducibility record."""
    if run.results is None:
        raise ResultsNotReady(f"run {run.id} has no results yet (status {run.status})")
    return run.results


@router.get("/report", response_class=HTMLResponse, responses=responses(404))
async def get_report(run: Run) -> HTMLResponse:
    """A self-contained HTML page with plots, SEAL's conditions table and example self-edits."""
    page = render_report(
        ReportRun(id=run.id, name=run.name, status=run.status, services=run.services, results=run.results)
    )
    return HTMLResponse(page)

"""A study's stored results as the REST API and the web site read them: through the service, owner checked first.

The studies' counterpart of :mod:`.run_results`, for the same reason: routes and pages turn requests into calls
and answers, the service decides who may read what, and only the service reads the store (route or page →
service → store). Every method takes the reader's ``user`` and reads the study with that owner first, so another
user's study is a NotFound (404) before anything of it is read. Held by
:class:`~ancho.server.service.Service` as ``svc.study_results``; the study's record itself, submitting and
cancelling stay on the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..stores.base import RunRecord, Store


class StudyResults:
    def __init__(self, store: Store):
        self.store = store

    def summary(self, user: str, study_id: str) -> dict[str, Any]:
        """The study summary object (DESIGN.md §2 Studies), as far as the study has got."""
        from ..studies.service import study_summary

        return study_summary(self.store, study_id, owner=user)

    def points(self, user: str, study_id: str) -> pd.DataFrame:
        """The points table (one row per point), as ``Study.frame``."""
        from ..studies.service import points_frame

        return points_frame(self.store, study_id, owner=user)

    def compare_points(self, user: str, study_id: str, baseline: int) -> dict[str, Any]:
        """Every succeeded point against point ``baseline`` (paired on common random numbers, Holm-adjusted);
        InputError for a baseline that is not a point or has no run yet."""
        from ..studies.service import compare_points

        return compare_points(self.store, study_id, baseline, owner=user)

    def point_runs(self, user: str, study_id: str) -> list[RunRecord | None]:
        """Each point's run record in point order (None for a point whose run is not written yet): what the
        points' mean paths are drawn from."""
        from ..studies.service import point_runs

        return point_runs(self.store, self.store.get_study(study_id, owner=user))

    # -- reports ------------------------------------------------------------------------------------------------
    def report_pdf(self, user: str, study_id: str, baseline: int | None = None) -> bytes:
        """The study's PDF report (NotFound for another user's study or a run id; InputError for a bad baseline).
        CPU-bound: call it off the event loop."""
        from ..reports import rendering
        from ..reports.cache import reports, study_key
        from ..reports.study_facts import find_study
        from ..reports.study_pdf import write_study_pdf

        record = find_study(self.store, study_id, owner=user)

        def render() -> bytes:
            import io

            with rendering():
                buf = io.BytesIO()
                write_study_pdf(self.store, study_id, buf, owner=user, baseline=baseline)
                return buf.getvalue()

        key = study_key(record, "pdf", baseline)
        return render() if key is None else reports.get(key, render)

    def report_notebook(self, user: str, study_id: str, api_url: str) -> bytes:
        """The study's notebook: the points table embedded, a point's results fetched from ``api_url``."""
        from ..reports import rendering
        from ..reports.cache import reports, study_key
        from ..reports.notebook import notebook_bytes
        from ..reports.study_facts import find_study
        from ..reports.study_notebook import build_study_notebook

        record = find_study(self.store, study_id, owner=user)

        def render() -> bytes:
            with rendering():
                return notebook_bytes(build_study_notebook(self.store, study_id, "api", owner=user, api_url=api_url))

        key = study_key(record, "notebook", api_url)
        return render() if key is None else reports.get(key, render)

"""What the coordinator accepts at its door, in one place: the size of a request body and of its parts.

The limits of a passage record (title, id, questions, answers) belong to its format and live with it, in
`seal_lab.formats.passages`; the schemas (schemas.py) and the run-creation checks (engine/admission.py) use the names
here. A request over a limit is refused before any work starts: 413 for a body too large
(api/bodylimit.py), 422 for a part.
"""

from __future__ import annotations

#: A request body: 16 MiB holds the 500 passages a run may have at SQuAD's sizes many times over
#: (SEAL_COORDINATOR_MAX_BODY_BYTES changes it).
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
#: Passages in one request, before any is parsed: above every coordinator's own `max_passages_per_run`
#: (a setting, checked next, before parsing too).
MAX_PASSAGES_PER_REQUEST = 5_000
#: Imported self-edits of one teacher, and the length of one completion: the generator refuses an Import
#: output over 50,000 characters (services/generator/server.py MAX_IMPORT_CHARS; a test keeps them equal).
MAX_TEACHER_PASSAGES = MAX_PASSAGES_PER_REQUEST
MAX_TEACHER_COMPLETIONS = 64
MAX_TEACHER_COMPLETION_CHARS = 50_000
#: A self-edit format's name (the generator's are short words like `implications`).
FORMAT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"
#: A run's name, shown in lists.
MAX_RUN_NAME_CHARS = 200

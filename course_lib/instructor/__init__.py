"""The instructor's side of the course: ``course build | data | grade | feedback | export``.

It runs untrusted code (students' submissions) and never imports torch itself: the kernels it starts do.

| module | concern |
|---|---|
| :mod:`.cli` | the ``course`` command and its subcommands |
| :mod:`.build` | the instructor solution run (``make course``) |
| :mod:`.grade` | ``course grade``: the parallel, resumable run over a class's submissions |
| :mod:`.autograde` | one submission in a worker: nbgrader's ``AutogradeApp`` with this course's pipeline |
| :mod:`.gradebook` | the course's folders, the single-writer merge into nbgrader's gradebook, the journal |
| :mod:`.preprocessors` | the nbgrader preprocessors added to autograde and feedback |
| :mod:`.execute` | nbgrader's ``Execute`` with the guard and recovery from hung kernels |
| :mod:`.sandbox` | bubblewrap, the resource limits and the kernel provisioner |
| :mod:`.policy` | the per-exercise policy check of the student's source |
| :mod:`.verdict` | the comparison with the trusted run, outside the kernel |
| :mod:`.feedback` | ``course feedback`` and ``course export`` |
"""

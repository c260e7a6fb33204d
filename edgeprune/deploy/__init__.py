"""``edgeprune deploy`` and ``bench --remote``: ship the torch-free runtime and a model to boards
over SSH, verify it there, benchmark it there.

:mod:`.ssh` (the system OpenSSH client, safe defaults, one-line errors), :mod:`.package` (what is
shipped: artifacts, a wheel of this project, a verification set, the manifest), :mod:`.deploy`
(probe, upload to staging, commit, several boards in parallel), :mod:`.remote` (``bench
--remote``), :mod:`.remote_steps` (sent to the board's own ``python3``; stdlib only) and
:mod:`.on_board` (run by the deployed runtime on the board: verify, bench).
"""

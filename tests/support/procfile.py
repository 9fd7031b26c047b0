"""The Procfile's dramatiq groups, started as the Procfile starts them: the stock dramatiq CLI, each on its queues.

The groups are read from the Procfile itself, so a test runs the process layout
operators deploy (today `worker`, `sender` and `hooks`), not a copy that can drift.
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import sys
from pathlib import Path

from dispatcher.ops.supervisor import read_procfile

from .deployment import Deployment
from .wait import wait_for
from .worker import ROOT, WorkerProcess

PROCFILE = ROOT / "Procfile"
NAMESPACE = "${TIDINGS_NAMESPACE:-tidings}"


class ProcessGroup(WorkerProcess):
    """One dramatiq line of the Procfile: ``dramatiq <arguments>`` (modules, --processes, --threads, --queues)."""

    def __init__(self, env: dict[str, str], log_path: Path, *, arguments: list[str]) -> None:
        super().__init__(
            env, log_path, processes=option(arguments, "--processes"), threads=option(arguments, "--threads")
        )
        self.arguments = arguments

    def start(self, *, timeout: float = 30.0) -> ProcessGroup:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dramatiq", *self.arguments],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._ready, timeout=timeout, interval=0.1, what=f"the {self.log_path.stem} group to be ready")
        return self


def option(arguments: list[str], name: str) -> int:
    """The number after `name` in a dramatiq command line: option(arguments, "--processes")."""
    return int(arguments[arguments.index(name) + 1])


def procfile_groups(namespace: str, procfile: Path = PROCFILE) -> dict[str, list[str]]:
    """Procfile name -> dramatiq's arguments, for every line that runs dramatiq (not the periodiq scheduler)."""
    groups = {}
    for name, command in read_procfile(procfile).items():
        words = shlex.split(command.replace(NAMESPACE, namespace))
        if words[0] == "env":  # `env NAME=VALUE … dramatiq …`: each group's metrics port; tests set their own
            words = list(itertools.dropwhile(lambda word: "=" in word, words[1:]))
        if words[0] != "dramatiq":
            continue  # the scheduler and the web process (whose ${TIDINGS_HTTP_*} the shell expands)
        assert not any("$" in word for word in words), f"a variable other than {NAMESPACE} in: {command}"
        groups[name] = words[1:]
    return groups


def start_procfile(deployment: Deployment, procfile: Path = PROCFILE) -> dict[str, ProcessGroup]:
    """Start the Procfile's dramatiq groups on the deployment's queues, each ready, and use its database.

    Each group logs to <tmp_path>/<name>.log; teardown kills them with the deployment's workers.
    """
    groups = {
        name: ProcessGroup(deployment.env, deployment.tmp_path / f"{name}.log", arguments=arguments)
        for name, arguments in procfile_groups(deployment.namespace, procfile).items()
    }
    deployment.workers += groups.values()
    for group in groups.values():
        group.start()
    deployment.use_database()
    return groups

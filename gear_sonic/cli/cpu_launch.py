"""Multi-process CPU training under `accelerate launch --cpu`.

accelerate's launcher starts a single process for `--cpu` (multi-CPU is meant to go through mpirun),
and passes neither `--num_processes` nor `--machine_rank` to it. So `accelerate launch --cpu
--num_processes 2 script.py` would quietly train on one process. When our entry point finds itself
started that way (parent is `accelerate launch`, no distributed environment yet), it reads the
launcher's own arguments with accelerate's parser and becomes the per-machine launcher itself:
`torch.distributed.run` (torchrun) with `num_processes / num_machines` workers on this machine,
`--machine_rank` as the node rank and `--main_process_ip/--main_process_port` as the rendezvous.
torchrun's agent watches the workers: when one dies, it stops the others and exits non-zero.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass

# Set in the environment of a process that is already one worker of a distributed run.
_DISTRIBUTED_ENV = ("LOCAL_RANK", "RANK", "WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
# Seconds between torchrun's checks of its workers (a dead worker is noticed within this).
MONITOR_INTERVAL_S = 0.5


@dataclass
class CpuLaunch:
    num_processes: int
    num_machines: int
    machine_rank: int
    main_process_ip: str | None
    main_process_port: int | None

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines


def _parent_accelerate_args() -> list[str] | None:
    """The arguments after `launch` of the `accelerate launch` process that started us, if it did."""
    try:
        import psutil

        cmdline = psutil.Process(os.getppid()).cmdline()
    except Exception:  # no psutil, no permission, parent gone: not launched by accelerate as far as we know
        return None
    for i, part in enumerate(cmdline):
        name = os.path.basename(part)
        if (name == "launch" and i > 0 and os.path.basename(cmdline[i - 1]).startswith("accelerate")) or (
            name == "accelerate.commands.launch"
        ):
            return cmdline[i + 1:]
    return None


def detect_cpu_launch() -> CpuLaunch | None:
    """A multi-process `accelerate launch --cpu` that accelerate itself ran as one process, else None."""
    if any(k in os.environ for k in _DISTRIBUTED_ENV):
        return None
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() not in ("true", "1", "yes"):
        return None
    args = _parent_accelerate_args()
    if args is None:
        return None
    from accelerate.commands.launch import launch_command_parser

    parsed, _ = launch_command_parser().parse_known_args(args)
    num_processes = int(parsed.num_processes or 1)
    num_machines = int(parsed.num_machines or 1)
    if num_processes <= 1 and num_machines <= 1:
        return None
    if num_processes % num_machines:
        raise SystemExit(
            f"accelerate launch: --num_processes {num_processes} is not a multiple of --num_machines {num_machines}"
        )
    return CpuLaunch(
        num_processes=num_processes,
        num_machines=num_machines,
        machine_rank=int(parsed.machine_rank or 0),
        main_process_ip=parsed.main_process_ip,
        main_process_port=int(parsed.main_process_port) if parsed.main_process_port else None,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_command(launch: CpuLaunch, script: str, script_args: list[str]) -> list[str]:
    if launch.main_process_port is not None:
        port = launch.main_process_port
    elif launch.num_machines == 1:
        port = _free_port()  # accelerate's default 29500 may be taken by another run on this machine
    else:
        port = int(os.environ.get("MASTER_PORT", 29500))
    addr = launch.main_process_ip or os.environ.get("MASTER_ADDR", "127.0.0.1")
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(launch.num_machines),
        "--nproc_per_node", str(launch.processes_per_machine),
        "--node_rank", str(launch.machine_rank),
        "--master_addr", addr,
        "--master_port", str(port),
        "--max_restarts", "0",
        "--monitor_interval", str(MONITOR_INTERVAL_S),
        script, *script_args,
    ]


def relaunch_as_workers(script: str, script_args: list[str]) -> int | None:
    """If started by a multi-process `accelerate launch --cpu`, run this machine's workers and return
    their launcher's exit code; otherwise None (continue as a normal single process)."""
    launch = detect_cpu_launch()
    if launch is None:
        return None
    cmd = torchrun_command(launch, script, script_args)
    env = dict(os.environ, ACCELERATE_USE_CPU="True")
    print(
        f"accelerate launch --cpu: starting {launch.processes_per_machine} worker process(es) on machine "
        f"{launch.machine_rank} of {launch.num_machines} ({launch.num_processes} in all) with torchrun",
        flush=True,
    )
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 130
    if code != 0:
        print(
            f"ERROR: training failed on machine {launch.machine_rank} (torchrun exit code {code}): a worker process "
            "died or gave up; torchrun's report above names the first failure ('Root Cause').",
            file=sys.stderr, flush=True,
        )
    return code

"""Build the bundled sample data: synthesised G1 clips with matching SMPL and SOMA joints.

    python data_process/make_sample_data.py --output sample_data

Every clip is planned and solved by `gear_sonic.data.synthesis`, then goes through the same
pipeline as user data: a Bones-SEED style CSV (120 fps) converted by
`convert_soma_csv_to_motion_lib.py` and filtered by `filter_and_copy_bones_data.py`, a SOMA BVH
(real SOMA skeleton) extracted by `extract_soma_joints_from_bvh.py`, and an SMPL joints npz.
Output (replacing these folders under --output, each only once complete):

    robot_filtered/   motion library, 30 fps   (MotionLibrary.open)
    smpl_filtered/    <clip>.npz SMPL-24 joints, y-up, 30 fps
    soma_filtered/    <clip>.npz SOMA-26 joints, z-up, 30 fps
    manifest.json     clip list, descriptions, seed and the plausibility figures

Raw CSV/BVH files go to a temporary folder unless --raw_dir is given. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


SCRIPTS_DIR = Path(__file__).resolve().parent
LIBRARY_FPS = 30.0
BVH_FPS = 30.0


def _make_clip(task: tuple[str, int, str, str, str]) -> dict:
    """Worker: synthesise one clip, check it, and write its CSV, BVH and SMPL npz."""
    import torch

    torch.set_num_threads(1)
    from gear_sonic.data import write_bones_csv, write_smpl_npz
    from gear_sonic.data.bvh import write_bvh
    from gear_sonic.data.synthesis import (
        SYNTH_FPS_HZ,
        ground_contact_report,
        retarget_to_human,
        smpl_npz_arrays,
        smpl_skeleton,
        soma_bvh_motion,
        soma_human_skeleton,
        support_margin_m,
        synthesize_clip,
    )

    name, seed, raw_dir, smpl_dir, soma_skeleton_path = task
    clip = synthesize_clip(name, seed)
    contact = ground_contact_report(clip.root_pos, clip.root_quat, clip.dof_pos, clip.fps)
    margin = support_margin_m(clip.root_pos, clip.root_quat, clip.dof_pos)
    write_bones_csv(Path(raw_dir) / "csv" / f"{name}.csv", clip.root_pos, clip.root_quat, clip.dof_pos, fps=SYNTH_FPS_HZ)

    step = int(round(SYNTH_FPS_HZ / LIBRARY_FPS))
    frames = slice(None, None, step)
    args = (clip.root_pos[frames], clip.root_quat[frames], clip.dof_pos[frames], clip.stance[:, frames], LIBRARY_FPS)
    smpl = smpl_npz_arrays(retarget_to_human(smpl_skeleton(), *args))
    write_smpl_npz(Path(smpl_dir) / f"{name}.npz", smpl["smpl_joints"], LIBRARY_FPS,
                   transl_y_up=smpl["transl"], pose_aa=smpl["pose_aa"])
    soma = retarget_to_human(soma_human_skeleton(soma_skeleton_path), *args)
    write_bvh(Path(raw_dir) / "bvh" / f"{name}.bvh", soma_bvh_motion(soma, soma_skeleton_path), precision=6)
    return {
        "name": name,
        "description": clip.description,
        "duration_s": round(clip.duration_s, 4),
        "frames_120fps": clip.num_frames,
        "max_penetration_m": contact.max_penetration_m,
        "max_contact_slide_m": contact.max_contact_slide_m,
        "frames_without_support": contact.frames_without_support,
        "min_support_margin_m": float(margin.min()),
        "ik_foot_error_m": clip.foot_error_m,
        "com_error_m": clip.com_error_m,
    }


def _run(script: str, *args: str) -> None:
    """Run one of the data_process scripts exactly as a user would."""
    command = [sys.executable, str(SCRIPTS_DIR / script), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{script} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}")


def _replace_dir(source: Path, destination: Path) -> None:
    """Put a finished folder in place of an older one, never leaving a half-written folder."""
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        destination.rename(old)
        source.rename(destination)
        shutil.rmtree(old)
    else:
        source.rename(destination)


def make_sample_data(
    output: Path,
    clips: list[str] | None = None,
    seed: int | None = None,
    num_workers: int = 2,
    raw_dir: Path | None = None,
    soma_skeleton: str | None = None,
) -> dict:
    """Build the sample data under `output`; returns the manifest."""
    from gear_sonic.data import MotionLibrary
    from gear_sonic.data.soma import soma_skeleton_path
    from gear_sonic.data.synthesis import DEFAULT_SEED, SAMPLE_CLIP_NAMES

    seed = DEFAULT_SEED if seed is None else seed
    names = list(clips) if clips else list(SAMPLE_CLIP_NAMES)
    unknown = [n for n in names if n not in SAMPLE_CLIP_NAMES]
    if unknown:
        raise SystemExit(f"unknown clip(s) {unknown}; known: {', '.join(SAMPLE_CLIP_NAMES)}")
    skeleton_path = str(soma_skeleton_path(soma_skeleton))
    output.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".make_sample_data-", dir=output))
    try:
        raw = raw_dir if raw_dir is not None else work / "raw"
        for sub in ("csv", "bvh"):
            (raw / sub).mkdir(parents=True, exist_ok=True)
        smpl_dir = work / "smpl_filtered"
        smpl_dir.mkdir()
        tasks = [(name, seed, str(raw), str(smpl_dir), skeleton_path) for name in names]
        started = time.perf_counter()
        if num_workers > 1:
            with multiprocessing.get_context("spawn").Pool(min(num_workers, len(tasks))) as pool:
                records = pool.map(_make_clip, tasks)
        else:
            records = [_make_clip(t) for t in tasks]
        synth_s = time.perf_counter() - started
        workers = str(max(1, num_workers))
        _run("convert_soma_csv_to_motion_lib.py", "--input", str(raw / "csv"), "--output", str(work / "robot"),
             "--fps", str(LIBRARY_FPS), "--fps_source", "120", "--num_workers", workers, "--no_progress")
        _run("filter_and_copy_bones_data.py", "--source", str(work / "robot"), "--dest", str(work / "robot_filtered"))
        _run("extract_soma_joints_from_bvh.py", "--input", str(raw / "bvh"), "--output", str(work / "soma_filtered"),
             "--fps", str(LIBRARY_FPS), "--num_workers", workers, "--quiet")
        lib = MotionLibrary.open(work / "robot_filtered", smpl_path=smpl_dir, soma_path=work / "soma_filtered")
        if sorted(lib.names) != sorted(names) or not (lib.has_smpl and lib.has_soma):
            raise RuntimeError(f"library check failed: clips {lib.names}, smpl {lib.has_smpl}, soma {lib.has_soma}")
        for record in records:
            record["frames_30fps"] = int(lib.num_frames[lib.names.index(record["name"])])
        manifest = {
            "generator": "data_process/make_sample_data.py",
            "seed": seed,
            "library_fps": LIBRARY_FPS,
            "source_fps": 120.0,
            "clips": records,
            "total_duration_s": round(sum(r["duration_s"] for r in records), 3),
        }
        for sub in ("robot_filtered", "smpl_filtered", "soma_filtered"):
            _replace_dir(work / sub, output / sub)
        manifest_tmp = work / "manifest.json"
        manifest_tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        manifest_tmp.replace(output / "manifest.json")
        total_s = time.perf_counter() - started
        print(f"{len(records)} clips, {manifest['total_duration_s']:.1f} s of motion -> {output} "
              f"(synthesis {synth_s:.1f} s, total {total_s:.1f} s)")
        worst = {k: max(r[k] for r in records) for k in ("max_penetration_m", "max_contact_slide_m")}
        print(f"max penetration {worst['max_penetration_m'] * 1000:.3f} mm, max stance slide "
              f"{worst['max_contact_slide_m'] * 1000:.3f} mm, min CoM support margin "
              f"{min(r['min_support_margin_m'] for r in records) * 100:.2f} cm")
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("sample_data"), help="where to write (default sample_data)")
    parser.add_argument("--clips", nargs="+", help="only these clips (default: the whole catalogue)")
    parser.add_argument("--seed", type=int, default=None, help="seed for phases and frequencies (default fixed)")
    parser.add_argument("--num_workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--raw_dir", type=Path, default=None, help="keep the raw CSV and BVH files here")
    parser.add_argument("--soma_skeleton", default=None,
                        help="SOMA skeleton BVH (default $GEAR_SONIC_SOMA_BVH or sample_data/soma_skeleton/)")
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    args = parser.parse_args(argv)
    if args.list:
        from gear_sonic.data.synthesis import SAMPLE_CLIPS

        for recipe in SAMPLE_CLIPS:
            print(f"{recipe.name:24s} {recipe.duration_s:5.1f} s  {recipe.description}")
        return 0
    make_sample_data(args.output, args.clips, args.seed, args.num_workers, args.raw_dir, args.soma_skeleton)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""First-use generation says what it generates, where, and counts cameras x frames."""

from __future__ import annotations

import re
import threading
import time

from avatarbench.data.synth.progress import count_files, generation_progress


def test_progress_counts_the_images_a_real_generation_writes(tmp_path, capsys):
    from avatarbench.data.synth.head import PRESETS, ensure_synthetic_head
    from avatarbench.data.synth.rig import NUM_CAMERAS

    union = ensure_synthetic_head("synth_head_a", preset="tiny", root=tmp_path)
    err = capsys.readouterr().err
    n_t = sum(T for plan in PRESETS["tiny"].sequences.values() for _, T in plan)
    total = NUM_CAMERAS * n_t
    final = union.parent
    assert f"first use: generating the synthetic head subjects ({NUM_CAMERAS} cameras x {n_t} timesteps) " \
           f"into {final} (once; later runs reuse it)" in err
    assert re.search(rf"generated {total} of {total} images in \d+ s", err)
    assert count_files(final, "*/images/*.png") == total
    # second use: silent
    ensure_synthetic_head("synth_head_b", preset="tiny", root=tmp_path)
    assert "first use" not in capsys.readouterr().err


def test_bar_follows_files_written_by_another_thread(tmp_path):
    import io

    out = io.StringIO()
    folder = tmp_path / "gen"

    def writer():
        for i in range(6):
            (folder / f"s{i % 2}" / "images").mkdir(parents=True, exist_ok=True)
            (folder / f"s{i % 2}" / "images" / f"{i}.png").write_bytes(b"")
            (folder / f"s{i % 2}" / f"{i}.npy").write_bytes(b"")  # not counted
            time.sleep(0.02)

    with generation_progress(folder, "*/images/*.png", 6, "test set", tmp_path / "final", interval=0.01,
                             stream=out):
        t = threading.Thread(target=writer)
        t.start()
        t.join()
    text = out.getvalue()
    assert text.startswith(f"first use: generating the test set into {tmp_path / 'final'}")
    assert "generated 6 of 6 images" in text

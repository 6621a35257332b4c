"""docker's masked paths as this host has them: the fixed list, then each CPU's thermal_throttle."""

from __future__ import annotations

from minirun.runtime.rootfs import MASKED_PATHS, masked_paths


def test_each_cpus_thermal_throttle_is_masked_in_cpu_order(tmp_path):
    for name in ("cpu0/thermal_throttle", "cpu1", "cpu10/thermal_throttle", "cpu2/thermal_throttle", "cpufreq"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "cpuidle").mkdir()
    (tmp_path / "cpu3").write_text("not a cpu dir")
    assert masked_paths(str(tmp_path)) == [
        *MASKED_PATHS,
        "/sys/devices/system/cpu/cpu0/thermal_throttle",
        "/sys/devices/system/cpu/cpu2/thermal_throttle",
        "/sys/devices/system/cpu/cpu10/thermal_throttle",
    ]


def test_a_host_without_the_cpu_dir_masks_the_fixed_list(tmp_path):
    assert masked_paths(str(tmp_path / "missing")) == list(MASKED_PATHS)

"""Schemas of the two container descriptions a cube carries, mirroring what their consumers parse:
``mlcube.yaml`` (the MLCube runner: tasks -> parameters -> inputs/outputs with type, default and opts) and MedPerf's
``container_config.yaml`` (container type, image, per task input/output volumes mounted under
``/mlcommons/volumes``). Extra keys are rejected, so a typo cannot pass unnoticed."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import field_validator

from automed.config import Strict, load_yaml_model
from automed.errors import ConfigError


class IOParam(Strict):
    type: Literal["file", "directory"]
    default: str
    opts: Literal["ro", "rw"] | None = None


class TaskParams(Strict):
    inputs: dict[str, IOParam]
    outputs: dict[str, IOParam]


class Task(Strict):
    parameters: TaskParams
    entrypoint: str | None = None


class Author(Strict):
    name: str
    email: str = ""
    org: str = ""


class Platform(Strict):
    accelerator_count: int = 0
    need_internet_access: bool = False
    host_memory_gb: float | None = None


class DockerSection(Strict):
    image: str
    build_context: str
    build_file: str
    gpu_args: str | None = None
    cpu_args: str | None = None


class MLCube(Strict):
    name: str
    description: str
    authors: list[Author]
    platform: Platform
    docker: DockerSection
    tasks: dict[str, Task]

    @field_validator("tasks")
    @classmethod
    def _medperf_tasks(cls, tasks: dict[str, Task]) -> dict[str, Task]:
        infer = tasks.get("infer")
        if infer is None or "evaluate" not in tasks:
            raise ValueError("tasks must include infer and evaluate")
        missing = {"data_path", "parameters_file"} - set(infer.parameters.inputs)
        if missing or "output_path" not in infer.parameters.outputs:
            raise ValueError(
                f"infer needs inputs data_path, parameters_file and output output_path (missing {missing})"
            )
        return tasks


class Volume(Strict):
    mount_path: str
    type: Literal["file", "directory"]

    @field_validator("mount_path")
    @classmethod
    def _under_volumes(cls, v: str) -> str:
        if not v.startswith("/mlcommons/volumes/"):
            raise ValueError("MedPerf mounts volumes under /mlcommons/volumes/")
        return v


class ContainerTask(Strict):
    input_volumes: dict[str, Volume]
    output_volumes: dict[str, Volume]


class ContainerConfig(Strict):
    container_type: Literal["DockerImage", "SingularityFile"]
    image: str
    tasks: dict[str, ContainerTask]

    @field_validator("tasks")
    @classmethod
    def _infer(cls, tasks: dict[str, ContainerTask]) -> dict[str, ContainerTask]:
        infer = tasks.get("infer")
        if infer is None:
            raise ValueError("a model container needs the task infer")
        if {"data_path", "parameters_file"} - set(
            infer.input_volumes
        ) or "output_path" not in infer.output_volumes:
            raise ValueError(
                "infer needs input volumes data_path, parameters_file and the output volume output_path"
            )
        return tasks


def validate_cube(folder: Path) -> tuple[MLCube, ContainerConfig]:
    """Load both descriptions of a cube folder; a :class:`ConfigError` lists what is wrong."""
    files = (folder / "mlcube" / "mlcube.yaml", folder / "container_config.yaml")
    for f in files:
        if not f.is_file():
            raise ConfigError.single(
                f,
                "a cube holds mlcube/mlcube.yaml and container_config.yaml",
                "missing",
                "re-run `automed package`",
            )
    return load_yaml_model(MLCube, files[0]), load_yaml_model(ContainerConfig, files[1])

"""Writes of projects and the UI settings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import prefetch_related_objects

from hierarchy.access import ensure_allowed, ensure_can, ensure_can_all
from hierarchy.actors import ActorLike, as_actor
from hierarchy.audit import record_delete, record_update, snapshot
from hierarchy.governance import Catalog, check_descendants_fit, clean_governance
from hierarchy.models import AccessGroup, Governed, Team
from hierarchy.selectors import teams_managed_by, teams_visible_to
from hierarchy.services import (
    BatchValidationError,
    access_groups_by_name,
    build_governed,
    check_new_id,
    group_names,
    insert_governed,
    pick_access_groups,
    resolve_access_groups,
    save_governed,
    unique_violation,
)
from projects.models import Project, UISettings
from projects.selectors import projects_managed_by, projects_visible_to, ui_settings_get

MSG_CREATE_DENIED = "Only admins or team admins can create projects."
MSG_CHANGE_DENIED = "Only admins or team admins can change projects."
MSG_MOVE_DENIED = "Moving a project needs admin rights on both teams."
MSG_MOVE_WITH_KEYS = (
    "Cannot move project {project} to another team. {count} key(s) are associated with it."
)
MSG_DELETE_WITH_KEYS = (
    "Cannot delete project {project}. {count} key(s) are associated with it. "
    "Please delete or reassign the keys first."
)
MSG_UI_SETTINGS_DENIED = "Only proxy admins can change the UI settings."


@transaction.atomic
def project_create(
    *,
    actor: ActorLike,
    team: Team,
    alias: str,
    description: str = "",
    id: str | None = None,
    access_groups: Iterable[str] | None = None,
    **governance: Any,
) -> Project:
    actor = as_actor(actor)
    ensure_can(
        team,
        visible=teams_visible_to(actor),
        managed=teams_managed_by(actor),
        level_name="team",
        message=MSG_CREATE_DENIED,
    )
    check_new_id(Project, id)
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        governance, level_name="project", parent=team, access_groups=group_names(groups)
    )
    project = Project(team=team, alias=alias, description=description or "")
    if id is not None:
        project.pk = id
    save_governed(project, actor=actor, cleaned=cleaned, access_groups=groups)
    return project


def project_check_move(project: Project) -> None:
    """A project that has keys cannot change team (Decision 5)."""
    keys = project.keys.count()
    if keys:
        raise ValidationError(
            {"team": [MSG_MOVE_WITH_KEYS.format(project=project.label, count=keys)]}
        )


@transaction.atomic
def project_update(
    *,
    actor: ActorLike,
    project: Project,
    access_groups: Iterable[str] | None = None,
    **fields: Any,
) -> Project:
    """Change a project. Omitted fields stay; a move needs admin rights on both teams."""
    actor = as_actor(actor)
    ensure_can(
        project,
        visible=projects_visible_to(actor),
        managed=projects_managed_by(actor),
        level_name="project",
        message=MSG_CHANGE_DENIED,
    )
    before = snapshot(project)
    target = fields.pop("team", project.team)
    if target.pk != project.team_id:
        ensure_can(
            target,
            visible=teams_visible_to(actor),
            managed=teams_managed_by(actor),
            level_name="team",
            message=MSG_MOVE_DENIED,
        )
        project_check_move(project)
        for name in ("models", "max_budget", "rpm_limit", "tpm_limit"):
            fields.setdefault(name, getattr(project, name))
    for name in ("alias", "description"):
        if name in fields:
            setattr(project, name, fields.pop(name) or "")
    groups = resolve_access_groups(access_groups)
    cleaned = clean_governance(
        fields,
        level_name="project",
        parent=target,
        current=project,
        access_groups=group_names(groups),
    )
    check_descendants_fit(project, cleaned, access_groups=group_names(groups), parent=target)
    project.team = target
    save_governed(project, actor=actor, cleaned=cleaned, access_groups=groups, before=before)
    return project


@transaction.atomic
def project_delete(*, actor: ActorLike, projects: Iterable[Project]) -> int:
    """Delete all of ``projects`` or none: every one is checked before any is deleted."""
    actor = as_actor(actor)
    projects = list(projects)
    for project in projects:
        ensure_can(
            project,
            visible=projects_visible_to(actor),
            managed=projects_managed_by(actor),
            level_name="project",
            message=MSG_CHANGE_DENIED,
        )
    errors = [
        MSG_DELETE_WITH_KEYS.format(project=project.pk, count=count)
        for project in projects
        if (count := project.keys.count())
    ]
    if errors:
        raise ValidationError(errors, code="protected")
    record_delete(actor, projects)
    return Project.objects.filter(pk__in=[p.pk for p in projects]).delete()[0]


def ui_settings_ensure_can_change(actor: ActorLike) -> None:
    ensure_allowed(as_actor(actor).is_proxy_admin, MSG_UI_SETTINGS_DENIED)


def ui_settings_update(*, actor: ActorLike, enable_projects_ui: bool) -> UISettings:
    actor = as_actor(actor)
    ui_settings_ensure_can_change(actor)
    settings = ui_settings_get()
    before = snapshot(settings)
    settings.enable_projects_ui = bool(enable_projects_ui)
    settings.updated_by = actor.label
    settings.full_clean()
    with transaction.atomic():
        settings.save()
        record_update(actor, settings, before)
    return settings


@transaction.atomic
def project_create_many(
    *, actor: ActorLike, projects: Sequence[Mapping[str, Any]], config_managed: bool = False
) -> list[Project]:
    """Create many projects under ``project_create``'s rules in a few queries. Each item
    holds ``project_create``'s arguments except ``id``. Raises ``BatchValidationError``
    naming every invalid item; then nothing is written."""
    actor = as_actor(actor)
    teams = {item["team"].pk: item["team"] for item in projects}
    ensure_can_all(
        teams.values(),
        visible=teams_visible_to(actor),
        managed=teams_managed_by(actor),
        level_name="team",
        message=MSG_CREATE_DENIED,
    )
    prefetch_related_objects(list(teams.values()), "access_groups", "organization__access_groups")
    catalog = Catalog.load()
    groups = access_groups_by_name(projects)
    taken = set(
        Project.objects.filter(
            team__in=list(teams), alias__in={item["alias"] for item in projects}
        ).values_list("team_id", "alias")
    )
    built: list[tuple[Governed, list[AccessGroup]]] = []
    errors: dict[int, ValidationError] = {}
    for index, item in enumerate(projects):
        fields = dict(item)
        team = teams[fields.pop("team").pk]
        project = Project(
            team=team, alias=fields.pop("alias"), description=fields.pop("description", "") or ""
        )
        try:
            chosen = pick_access_groups(fields.pop("access_groups", None), groups)
            build_governed(
                project,
                actor=actor,
                governance=fields,
                parent=team,
                catalog=catalog,
                groups=chosen,
                config_managed=config_managed,
            )
            if (team.pk, project.alias) in taken:
                raise unique_violation(project, "projects_project_alias_unique_in_team", "alias")
        except ValidationError as error:
            errors[index] = error
            continue
        taken.add((team.pk, project.alias))
        built.append((project, chosen))
    if errors:
        raise BatchValidationError(errors)
    insert_governed(Project, built, actor=actor)
    return [project for project, _ in built]  # type: ignore[misc]

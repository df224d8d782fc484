"""Instructions -> BuildPlan (pure): ARG scoping, stage graph, expanded steps.

``base_images(dockerfile, ...)`` lists the external images a target needs;
``make_plan(dockerfile, bases, ...)`` builds the :class:`~ocibuild.plan.model.BuildPlan`.
"""

from ocibuild.plan.planner import base_images, make_plan

__all__ = ["base_images", "make_plan"]

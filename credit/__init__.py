"""Credit assignment: sibling groups in, per-token advantages (+ diagnostics) out.

``get_credit(name).assign(groups, teacher, config)`` for every method; importing the
package registers the built-in ones (``grpo``, ``sgcd``, ``gear``).
"""

from credit import gear, group_relative, sgcd  # noqa: F401  (registers the methods)
from credit.registry import CreditMethod, get_credit, known_credit_methods, register_credit
from credit.teacher import TaskPrompts, Teacher, TeacherScorer
from credit.types import TokenAdvantages

__all__ = [
    "CreditMethod",
    "TaskPrompts",
    "Teacher",
    "TeacherScorer",
    "TokenAdvantages",
    "get_credit",
    "known_credit_methods",
    "register_credit",
]

"""The dependency graph: a scene depends on every scene whose frame it uses."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hailuo_pipe.storyboard.model import Scene


class CycleError(Exception):
    def __init__(self, cycle: list[str]) -> None:
        super().__init__(" -> ".join(cycle))
        self.cycle = cycle


@dataclass(frozen=True)
class Graph:
    """Scenes in storyboard order, with edges from each scene to the scenes it needs."""

    order: tuple[str, ...]
    needs: dict[str, tuple[str, ...]]

    @classmethod
    def of(cls, scenes: Iterable[Scene]) -> Graph:
        scenes = list(scenes)
        known = {s.id for s in scenes}
        needs = {
            s.id: tuple(dict.fromkeys(r.scene for r in s.frame_refs() if r.scene in known))
            for s in scenes
        }
        return cls(order=tuple(s.id for s in scenes), needs=needs)

    def dependants(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {n: [] for n in self.order}
        for node, deps in self.needs.items():
            for dep in deps:
                out[dep].append(node)
        return out

    def taken(self) -> set[str]:
        """The scenes another scene takes a frame from."""
        return {dep for deps in self.needs.values() for dep in deps}

    def topological(self) -> list[str]:
        """Dependencies first, otherwise storyboard order; raises CycleError naming a cycle.

        Not stdlib graphlib: its TopologicalSorter orders by readiness (for c->b, a, b->a, d it
        gives a, d, b, c, where plans and renders keep the storyboard's a, b, c, d), and names a
        cycle in the other direction from where the storyboard closes it."""
        state: dict[str, int] = {}  # 1 visiting, 2 done
        out: list[str] = []
        for root in self.order:
            if state.get(root):
                continue
            # iterative DFS so a 1,000-scene chain does not hit the recursion limit
            stack: list[tuple[str, int]] = [(root, 0)]
            path: list[str] = []
            while stack:
                node, i = stack.pop()
                if i == 0:
                    state[node] = 1
                    path.append(node)
                deps = self.needs[node]
                if i < len(deps):
                    stack.append((node, i + 1))
                    dep = deps[i]
                    if state.get(dep) == 1:
                        raise CycleError([*path[path.index(dep) :], dep])
                    if not state.get(dep):
                        stack.append((dep, 0))
                else:
                    state[node] = 2
                    path.pop()
                    out.append(node)
        return out

    def closure(self, roots: Iterable[str]) -> set[str]:
        """The roots and everything they need, transitively."""
        seen: set[str] = set()
        todo = list(roots)
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(self.needs[node])
        return seen

    def downstream(self, roots: Iterable[str]) -> set[str]:
        """Everything that needs any of the roots, transitively (roots excluded)."""
        dependants = self.dependants()
        seen: set[str] = set()
        todo = [d for r in roots for d in dependants[r]]
        while todo:
            node = todo.pop()
            if node not in seen:
                seen.add(node)
                todo.extend(dependants[node])
        return seen

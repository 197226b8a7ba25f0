"""Graph utilities: edge lists, adjacency matrices, hop distances and receptive fields."""

from gnnkit.graph.adjacency import adjacency
from gnnkit.graph.edges import from_edge_list, parse_edge_string, symmetrize
from gnnkit.graph.hops import hop_distances, layers_to_reach, receptive_field

__all__ = [
    "adjacency",
    "from_edge_list",
    "hop_distances",
    "layers_to_reach",
    "parse_edge_string",
    "receptive_field",
    "symmetrize",
]

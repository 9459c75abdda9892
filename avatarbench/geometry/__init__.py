"""Small geometry utilities shared by all methods and the geometry metrics (pure torch).

- :mod:`avatarbench.geometry.knn`   chunked brute-force k-nearest neighbours.
- :mod:`avatarbench.geometry.mesh`  normals, areas, edges, Laplacians, surface sampling,
  exact point-to-triangle / point-to-mesh distance.
"""

from __future__ import annotations

from avatarbench.geometry.knn import knn, mean_knn_distance
from avatarbench.geometry.mesh import (
    SurfaceSample,
    apply_laplacian,
    closest_point_on_triangle,
    cotangent_laplacian,
    cotangent_weights,
    face_areas,
    face_normals,
    face_vertices,
    laplacian_matrix,
    laplacian_smoothing_loss,
    mesh_edges,
    point_mesh_distance,
    point_triangle_distance,
    sample_surface,
    uniform_laplacian,
    uniform_weights,
    vertex_normals,
)

__all__ = [
    "knn",
    "mean_knn_distance",
    "SurfaceSample",
    "apply_laplacian",
    "closest_point_on_triangle",
    "cotangent_laplacian",
    "cotangent_weights",
    "face_areas",
    "face_normals",
    "face_vertices",
    "laplacian_matrix",
    "laplacian_smoothing_loss",
    "mesh_edges",
    "point_mesh_distance",
    "point_triangle_distance",
    "sample_surface",
    "uniform_laplacian",
    "uniform_weights",
    "vertex_normals",
]

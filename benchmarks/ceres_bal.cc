// Ceres peer for mixslam's bundle-adjustment benchmarks (driven by benchmarks/ceres_peer.py).
//
// Reads one BAL problem, solves it with Ceres' Levenberg-Marquardt and prints ONE JSON line on stdout.
//
//   ceres_bal FILE LINEAR_SOLVER [--threads N] [--max-iterations N] [--preconditioner P]
//             [--params-out PATH]
//
// LINEAR_SOLVER: DENSE_SCHUR, SPARSE_SCHUR or ITERATIVE_SCHUR (any name ceres::StringToLinearSolverType
// accepts). --preconditioner: a ceres::PreconditionerType name (default JACOBI, Ceres' own default;
// pass SCHUR_JACOBI with ITERATIVE_SCHUR). --params-out writes the final parameters as
//   <num_cameras> <num_points>
//   9 numbers per line, one line per camera  (w t f k1 k2)
//   3 numbers per line, one line per point   (X Y Z)
// in %.17g, so that Python can rescore them with mixslam's own cost.
//
// Camera model (BAL): P = R(w) X + t, p = -P.xy / P.z, d = 1 + k1 |p|^2 + k2 |p|^4, predicted = f d p;
// residual = predicted - observed. Cost = 0.5 sum r^2 (Ceres' convention, the same as mixslam's).
// No parameter block is held constant (as in Ceres' examples); the gauge is left free.

#include <ceres/ceres.h>
#include <ceres/rotation.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

struct BalData {
  int num_cameras = 0;
  int num_points = 0;
  int num_observations = 0;
  std::vector<int> camera_index;
  std::vector<int> point_index;
  std::vector<double> observed;  // 2 per observation
  std::vector<double> cameras;   // 9 per camera
  std::vector<double> points;    // 3 per point
};

bool ReadBal(const char* path, BalData* d, std::string* error) {
  FILE* f = std::fopen(path, "r");
  if (f == nullptr) {
    *error = std::string("cannot open ") + path;
    return false;
  }
  bool ok = std::fscanf(f, "%d %d %d", &d->num_cameras, &d->num_points, &d->num_observations) == 3 &&
            d->num_cameras > 0 && d->num_points > 0 && d->num_observations > 0;
  if (!ok) {
    *error = "bad header";
  }
  if (ok) {
    d->camera_index.resize(d->num_observations);
    d->point_index.resize(d->num_observations);
    d->observed.resize(2 * static_cast<size_t>(d->num_observations));
    for (int i = 0; ok && i < d->num_observations; ++i) {
      ok = std::fscanf(f, "%d %d %lf %lf", &d->camera_index[i], &d->point_index[i], &d->observed[2 * i],
                       &d->observed[2 * i + 1]) == 4 &&
           d->camera_index[i] >= 0 && d->camera_index[i] < d->num_cameras && d->point_index[i] >= 0 &&
           d->point_index[i] < d->num_points;
      if (!ok) *error = "bad observation " + std::to_string(i);
    }
  }
  if (ok) {
    d->cameras.resize(9 * static_cast<size_t>(d->num_cameras));
    d->points.resize(3 * static_cast<size_t>(d->num_points));
    for (double& v : d->cameras) {
      if (std::fscanf(f, "%lf", &v) != 1) {
        ok = false;
        *error = "truncated camera parameters";
        break;
      }
    }
    for (double& v : d->points) {
      if (!ok) break;
      if (std::fscanf(f, "%lf", &v) != 1) {
        ok = false;
        *error = "truncated point coordinates";
      }
    }
  }
  std::fclose(f);
  return ok;
}

// One observation: 2 residuals, parameter blocks camera (9) and point (3).
class BalReprojection {
 public:
  BalReprojection(double u, double v) : u_(u), v_(v) {}

  template <typename T>
  bool operator()(const T* camera, const T* point, T* residual) const {
    T P[3];
    ceres::AngleAxisRotatePoint(camera, point, P);
    P[0] += camera[3];
    P[1] += camera[4];
    P[2] += camera[5];
    const T px = -P[0] / P[2];
    const T py = -P[1] / P[2];
    const T r2 = px * px + py * py;
    const T scale = camera[6] * (T(1.0) + r2 * (camera[7] + camera[8] * r2));
    residual[0] = scale * px - u_;
    residual[1] = scale * py - v_;
    return true;
  }

 private:
  double u_;
  double v_;
};

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

int Usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: ceres_bal FILE LINEAR_SOLVER [--threads N] [--max-iterations N] "
               "[--preconditioner P] [--params-out PATH]\n",
               msg);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage("need FILE and LINEAR_SOLVER");
  const char* path = argv[1];
  std::string solver_name = argv[2];
  int threads = 1;
  int max_iterations = 100;
  std::string preconditioner = "JACOBI";
  std::string params_out;
  for (int i = 3; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--threads") {
      threads = std::atoi(v);
    } else if (a == "--max-iterations") {
      max_iterations = std::atoi(v);
    } else if (a == "--preconditioner") {
      preconditioner = v;
    } else if (a == "--params-out") {
      params_out = v;
    } else {
      return Usage(("unknown option " + a).c_str());
    }
  }
  if (threads < 1 || max_iterations < 0) return Usage("--threads must be >= 1, --max-iterations >= 0");

  ceres::Solver::Options options;
  if (!ceres::StringToLinearSolverType(solver_name, &options.linear_solver_type)) {
    return Usage(("unknown linear solver " + solver_name).c_str());
  }
  if (!ceres::StringToPreconditionerType(preconditioner, &options.preconditioner_type)) {
    return Usage(("unknown preconditioner " + preconditioner).c_str());
  }

  BalData data;
  std::string error;
  if (!ReadBal(path, &data, &error)) {
    std::fprintf(stderr, "error: %s: %s\n", path, error.c_str());
    return 1;
  }

  ceres::Problem problem;
  for (int i = 0; i < data.num_observations; ++i) {
    auto* cost = new ceres::AutoDiffCostFunction<BalReprojection, 2, 9, 3>(
        new BalReprojection(data.observed[2 * i], data.observed[2 * i + 1]));
    problem.AddResidualBlock(cost, nullptr, &data.cameras[9 * static_cast<size_t>(data.camera_index[i])],
                             &data.points[3 * static_cast<size_t>(data.point_index[i])]);
  }

  // Schur ordering: points eliminated first (group 0), cameras in group 1.
  auto ordering = std::make_shared<ceres::ParameterBlockOrdering>();
  for (int j = 0; j < data.num_points; ++j) ordering->AddElementToGroup(&data.points[3 * static_cast<size_t>(j)], 0);
  for (int c = 0; c < data.num_cameras; ++c) {
    ordering->AddElementToGroup(&data.cameras[9 * static_cast<size_t>(c)], 1);
  }
  options.linear_solver_ordering = ordering;

  options.minimizer_type = ceres::TRUST_REGION;
  options.trust_region_strategy_type = ceres::LEVENBERG_MARQUARDT;
  options.max_num_iterations = max_iterations;
  options.function_tolerance = 1e-6;
  options.initial_trust_region_radius = 1e4;
  options.num_threads = threads;
  options.logging_type = ceres::SILENT;
  options.minimizer_progress_to_stdout = false;
#ifndef CERES_NO_SUITESPARSE
  options.sparse_linear_algebra_library_type = ceres::SUITE_SPARSE;
#elif defined(CERES_USE_EIGEN_SPARSE)
  options.sparse_linear_algebra_library_type = ceres::EIGEN_SPARSE;
#endif

  std::string why;
  if (!options.IsValid(&why)) {
    std::fprintf(stderr, "error: invalid solver options: %s\n", why.c_str());
    return 1;
  }

  ceres::Solver::Summary summary;
  ceres::Solve(options, &problem, &summary);

  if (!params_out.empty()) {
    FILE* out = std::fopen(params_out.c_str(), "w");
    if (out == nullptr) {
      std::fprintf(stderr, "error: cannot write %s\n", params_out.c_str());
      return 1;
    }
    std::fprintf(out, "%d %d\n", data.num_cameras, data.num_points);
    for (int c = 0; c < data.num_cameras; ++c) {
      const double* x = &data.cameras[9 * static_cast<size_t>(c)];
      for (int k = 0; k < 9; ++k) std::fprintf(out, k ? " %.17g" : "%.17g", x[k]);
      std::fputc('\n', out);
    }
    for (int j = 0; j < data.num_points; ++j) {
      const double* x = &data.points[3 * static_cast<size_t>(j)];
      std::fprintf(out, "%.17g %.17g %.17g\n", x[0], x[1], x[2]);
    }
    if (std::fclose(out) != 0) {
      std::fprintf(stderr, "error: writing %s failed\n", params_out.c_str());
      return 1;
    }
  }

  std::printf(
      "{\"linear_solver\": \"%s\", \"preconditioner\": \"%s\", \"sparse_library\": \"%s\", "
      "\"threads\": %d, \"num_cameras\": %d, \"num_points\": %d, \"num_observations\": %d, "
      "\"initial_cost\": %.17g, \"final_cost\": %.17g, \"iterations\": %d, \"successful_steps\": %d, "
      "\"unsuccessful_steps\": %d, \"solver_time_s\": %.9g, \"linear_solver_time_s\": %.9g, "
      "\"termination\": \"%s\", \"message\": \"%s\", \"ceres_version\": \"%s\"}\n",
      ceres::LinearSolverTypeToString(summary.linear_solver_type_used),
      ceres::PreconditionerTypeToString(summary.preconditioner_type_used),
      ceres::SparseLinearAlgebraLibraryTypeToString(summary.sparse_linear_algebra_library_type), threads,
      data.num_cameras, data.num_points, data.num_observations, summary.initial_cost, summary.final_cost,
      summary.num_successful_steps + summary.num_unsuccessful_steps, summary.num_successful_steps,
      summary.num_unsuccessful_steps, summary.total_time_in_seconds, summary.linear_solver_time_in_seconds,
      ceres::TerminationTypeToString(summary.termination_type), JsonEscape(summary.message).c_str(),
      CERES_VERSION_STRING);
  return summary.IsSolutionUsable() ? 0 : 1;
}

// Declarations shared by the c10d source files (dist.cc, dist_nccl.cc).
#pragma once

#ifdef DPO_WITH_GLOO
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <node_api.h>

#include <chrono>
#include <functional>

namespace dpo {

// The process group behind a JS Group external (dist.cc); throws for a destroyed group.
c10::intrusive_ptr<c10d::Backend> group_backend(napi_env env, napi_value group);

void exports_dist_reducer(std::vector<std::pair<const char*, napi_callback>>& out);

// ProcessGroupNCCL over `store` for CUDA device `device_index`; defined in dist_nccl.cc when the
// build found nccl.h and a CUDA libtorch, otherwise it throws.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, int device_index);
bool nccl_compiled();

}  // namespace dpo
#endif

// ProcessGroupNCCL, in its own file because its header needs the CUDA runtime's and NCCL's
// headers: compiled with DPO_WITH_NCCL when the build found both (a CUDA libtorch; nccl.h from the
// nvidia-nccl wheel or the system), else make_nccl_backend says why it cannot.
#include "dist.h"

#ifdef DPO_WITH_GLOO
#ifdef DPO_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <stdexcept>

namespace dpo {

bool nccl_compiled() {
#ifdef DPO_WITH_NCCL
  return true;
#else
  return false;
#endif
}

c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank, int size,
                                                    std::chrono::milliseconds timeout, int device_index) {
#ifdef DPO_WITH_NCCL
  auto opts = c10d::ProcessGroupNCCL::Options::create();
  opts->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, rank, size, opts);
  // bind the communicator to this process's device now (torch.distributed's device_id), so the
  // first collective does not guess it from the current device
  const at::Device device(at::kCUDA, static_cast<c10::DeviceIndex>(device_index));
  pg->setBoundDeviceId(device);
  pg->eagerConnectSingleDevice(device);
  return pg;
#else
  (void)store; (void)rank; (void)size; (void)timeout; (void)device_index;
  throw std::runtime_error("this build of the addon has no NCCL: it was built against a libtorch without CUDA, or nccl.h "
                           "was not found (set DPO_NCCL_INCLUDE and rebuild with npm run build:native -- --force)");
#endif
}

}  // namespace dpo
#endif

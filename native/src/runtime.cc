// Process-wide runtime: build facts, threads, random generators, CUDA queries and knobs.
// CUDA is reached only through the device-generic hooks and allocator interfaces of ATen/c10, so
// one source tree builds against CPU and CUDA libtorch without CUDA headers.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/CachingDeviceAllocator.h>

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "common.h"

namespace dpo {
namespace {

uint64_t get_seed(napi_env env, napi_value v) {
  if (type_of(env, v) == napi_bigint) {
    uint64_t u;
    bool lossless;
    napi_get_value_bigint_uint64(env, v, &u, &lossless);
    return u;
  }
  const double d = get_double(env, v, "seed");
  if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw ArgError("seed must be a non-negative integer, got " + std::to_string(d));
  return static_cast<uint64_t>(d);
}

napi_value make_u64(napi_env env, uint64_t v) {
  if (v <= 9007199254740991ULL) return make_double(env, static_cast<double>(v));
  napi_value big;
  napi_create_bigint_uint64(env, v, &big);
  return big;
}

int cuda_device_count() {
  return at::detail::getCUDAHooks().hasCUDA() ? at::detail::getCUDAHooks().getNumGPUs() : 0;
}

napi_value build_info(napi_env env, napi_callback_info info) {
  DPO_TRY
  napi_value o = make_object(env);
  set_named(env, o, "torchVersion", make_string(env, DPO_TORCH_VERSION));
  set_named(env, o, "torchLibDir", make_string(env, DPO_TORCH_LIB_DIR));
  set_named(env, o, "cxx11Abi", make_bool(env, _GLIBCXX_USE_CXX11_ABI == 1));
  set_named(env, o, "cudaAvailable", make_bool(env, at::detail::getCUDAHooks().hasCUDA()));
  set_named(env, o, "cudaDeviceCount", make_int(env, cuda_device_count()));
  set_named(env, o, "mkl", make_bool(env, at::globalContext().hasMKL()));
  set_named(env, o, "mkldnn", make_bool(env, at::globalContext().hasMKLDNN()));
  set_named(env, o, "openmp", make_bool(env, at::globalContext().hasOpenMP()));
  set_named(env, o, "parallelInfo", make_string(env, at::get_parallel_info()));
  set_named(env, o, "config", make_string(env, at::show_config()));
  return o;
  DPO_CATCH(env)
}

// setNumThreads(n) / getNumThreads(). Inside a Node process libtorch starts at one thread.
napi_value set_num_threads(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const int64_t n = get_int(env, a.argv[0], "threads");
  if (n < 1) throw ArgError("thread count must be >= 1");
  at::set_num_threads(static_cast<int>(n));
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value get_num_threads(napi_env env, napi_callback_info info) {
  DPO_TRY
  return make_int(env, at::get_num_threads());
  DPO_CATCH(env)
}

// ---------------------------------------------------------------------------------- generators

napi_value generator_default(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  c10::Device device = parse_device(get_string(env, a.argv[0], "device"));
  if (device.is_cuda() && !device.has_index()) device = c10::Device(c10::kCUDA, 0);
  return wrap_generator(env, at::globalContext().defaultGenerator(device));
  DPO_CATCH(env)
}

// generatorNew(device, seed?) -> a generator of its own (torch.Generator(device)).
napi_value generator_new(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const c10::Device device = parse_device(get_string(env, a.argv[0], "device"));
  at::Generator g;
  if (device.is_cpu()) {
    g = at::make_generator<at::CPUGeneratorImpl>();
  } else if (device.is_cuda()) {
    g = at::detail::getCUDAHooks().getNewGenerator(device.has_index() ? device.index() : 0);
  } else {
    throw ArgError("generators exist for cpu and cuda devices, not " + device.str());
  }
  if (!is_nullish(env, a.argv[1])) {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(get_seed(env, a.argv[1]));
  }
  return wrap_generator(env, std::move(g));
  DPO_CATCH(env)
}

napi_value generator_manual_seed(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::Generator g = get_generator(env, a.argv[0]);
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_current_seed(get_seed(env, a.argv[1]));
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value generator_initial_seed(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::Generator g = get_generator(env, a.argv[0]);
  return make_u64(env, g.current_seed());
  DPO_CATCH(env)
}

napi_value generator_device(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  return make_string(env, device_string(get_generator(env, a.argv[0]).device()));
  DPO_CATCH(env)
}

// generatorGetState(g) -> uint8 CPU tensor handle (what torch.Generator.get_state returns)
napi_value generator_get_state(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::Generator g = get_generator(env, a.argv[0]);
  std::lock_guard<std::mutex> lock(g.mutex());
  return make_tensor(env, g.get_state());
  DPO_CATCH(env)
}

napi_value generator_set_state(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::Generator g = get_generator(env, a.argv[0]);
  const at::Tensor& state = get_tensor(get_double(env, a.argv[1], "state"));
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
  return make_undefined(env);
  DPO_CATCH(env)
}

// manualSeed(seed): torch.manual_seed — the default CPU generator and every CUDA device's.
napi_value manual_seed(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const uint64_t seed = get_seed(env, a.argv[0]);
  {
    auto g = at::globalContext().defaultGenerator(c10::kCPU);
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  for (int i = 0; i < cuda_device_count(); ++i) {
    auto g = at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(i)));
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  return make_undefined(env);
  DPO_CATCH(env)
}

// ---------------------------------------------------------------------------------------- cuda

c10::DeviceIndex cuda_index(napi_env env, napi_value v) {
  if (is_nullish(env, v)) return 0;
  const int64_t i = get_int(env, v, "device index");
  if (i < 0 || i >= cuda_device_count()) throw ArgError("no CUDA device " + std::to_string(i));
  return static_cast<c10::DeviceIndex>(i);
}

napi_value cuda_synchronize(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  if (cuda_device_count() == 0) throw std::runtime_error("CUDA is not available");
  at::detail::getCUDAHooks().deviceSynchronize(cuda_index(env, a.argv[0]));
  return make_undefined(env);
  DPO_CATCH(env)
}

// cudaSynchronizeAsync(index) -> Promise<void>: waits for the device on a libuv thread, so the JS
// thread stays free (data preparation runs) while the GPU finishes its queue.
napi_value cuda_synchronize_async(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  if (cuda_device_count() == 0) throw std::runtime_error("CUDA is not available");
  const c10::DeviceIndex index = cuda_index(env, a.argv[0]);
  return run_async(env, "cudaSynchronizeAsync", [index]() { at::detail::getCUDAHooks().deviceSynchronize(index); },
                   [](napi_env env) { return make_undefined(env); });
  DPO_CATCH(env)
}

// cudaDeviceInfo(index) -> {name, totalMemory, major, minor}. Through the CUDA driver API (libcuda,
// loaded by the CUDA runtime libtorch uses), whose entry points and attribute numbers are stable
// across CUDA versions: the addon needs no CUDA headers. The driver's ordinals follow
// CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER as the runtime's do.
napi_value cuda_device_info(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  if (cuda_device_count() == 0) throw std::runtime_error("CUDA is not available");
  const int index = cuda_index(env, a.argv[0]);
  static void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
  if (!lib) lib = dlopen("libcuda.so.1", RTLD_NOW);
  if (!lib) throw std::runtime_error("cannot load libcuda.so.1 (the NVIDIA driver library)");
  using GetName = int (*)(char*, int, int);
  using TotalMem = int (*)(size_t*, int);
  using Attribute = int (*)(int*, int, int);
  using Get = int (*)(int*, int);
  using Init = int (*)(unsigned);
  auto init = reinterpret_cast<Init>(dlsym(lib, "cuInit"));
  auto get = reinterpret_cast<Get>(dlsym(lib, "cuDeviceGet"));
  auto get_name = reinterpret_cast<GetName>(dlsym(lib, "cuDeviceGetName"));
  auto total_mem = reinterpret_cast<TotalMem>(dlsym(lib, "cuDeviceTotalMem_v2"));
  auto attribute = reinterpret_cast<Attribute>(dlsym(lib, "cuDeviceGetAttribute"));
  if (!init || !get || !get_name || !total_mem || !attribute) throw std::runtime_error("libcuda.so.1 lacks the device query functions");
  int dev = 0;
  if (init(0) != 0 || get(&dev, index) != 0) throw std::runtime_error("the CUDA driver cannot open device " + std::to_string(index));
  char name[256] = {0};
  size_t total = 0;
  int major = 0, minor = 0;
  constexpr int kComputeMajor = 75, kComputeMinor = 76;  // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR/MINOR
  if (get_name(name, sizeof(name) - 1, dev) != 0 || total_mem(&total, dev) != 0 ||
      attribute(&major, kComputeMajor, dev) != 0 || attribute(&minor, kComputeMinor, dev) != 0)
    throw std::runtime_error("the CUDA driver could not describe device " + std::to_string(index));
  napi_value o = make_object(env);
  set_named(env, o, "name", make_string(env, name));
  set_named(env, o, "totalMemory", make_double(env, static_cast<double>(total)));
  set_named(env, o, "major", make_int(env, major));
  set_named(env, o, "minor", make_int(env, minor));
  return o;
  DPO_CATCH(env)
}

napi_value cuda_empty_cache(napi_env env, napi_callback_info info) {
  DPO_TRY
  if (cuda_device_count() > 0) c10::getDeviceAllocator(c10::kCUDA)->emptyCache();
  return make_undefined(env);
  DPO_CATCH(env)
}

// cudaMemory(index) -> {allocated, reserved, peakAllocated, peakReserved} in bytes
napi_value cuda_memory(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  if (cuda_device_count() == 0) throw std::runtime_error("CUDA is not available");
  // the caching allocator exists only once CUDA is initialised (the first CUDA tensor)
  at::globalContext().lazyInitDevice(c10::kCUDA);
  const auto stats = c10::getDeviceAllocator(c10::kCUDA)->getDeviceStats(cuda_index(env, a.argv[0]));
  napi_value o = make_object(env);
  set_named(env, o, "allocated", make_double(env, static_cast<double>(stats.allocated_bytes[0].current)));
  set_named(env, o, "reserved", make_double(env, static_cast<double>(stats.reserved_bytes[0].current)));
  set_named(env, o, "peakAllocated", make_double(env, static_cast<double>(stats.allocated_bytes[0].peak)));
  set_named(env, o, "peakReserved", make_double(env, static_cast<double>(stats.reserved_bytes[0].peak)));
  return o;
  DPO_CATCH(env)
}

napi_value cuda_reset_peak(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  if (cuda_device_count() == 0) throw std::runtime_error("CUDA is not available");
  at::globalContext().lazyInitDevice(c10::kCUDA);
  c10::getDeviceAllocator(c10::kCUDA)->resetPeakStats(cuda_index(env, a.argv[0]));
  return make_undefined(env);
  DPO_CATCH(env)
}

// setAllowTF32(b): torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32.
napi_value set_allow_tf32(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const bool allow = get_bool(env, a.argv[0], "allow");
  at::globalContext().setFloat32MatmulPrecision(allow ? "high" : "highest");
  at::globalContext().setAllowTF32CuDNN(allow);
  return make_undefined(env);
  DPO_CATCH(env)
}

// setDeterministic(b): torch.use_deterministic_algorithms(b) with torch.backends.cudnn.deterministic.
// Deterministic cuBLAS needs CUBLAS_WORKSPACE_CONFIG set before cuBLAS starts (else every matmul on
// CUDA raises); it is set here when missing. Ops with no deterministic CUDA kernel (the UNet's
// nearest upsampling backward, for one) warn rather than fail (warn_only), as a run must still be
// possible. cuDNN's benchmark mode is left to setCudnnBenchmark: turning determinism off must not
// turn benchmarking on.
// exitNow(code): ends the process at once. process.exit() waits for libuv's worker threads, one
// of which may be blocked in a collective or a device wait for as long as its timeout.
napi_value exit_now(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  std::_Exit(static_cast<int>(get_int(env, a.argv[0], "code")));
  DPO_CATCH(env)
}

napi_value set_deterministic(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const bool on = get_bool(env, a.argv[0], "deterministic");
  if (on) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setDeterministicAlgorithms(on, /*warn_only=*/true);
  at::globalContext().setDeterministicCuDNN(on);
  if (on) at::globalContext().setBenchmarkCuDNN(false);
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value set_cudnn_benchmark(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  at::globalContext().setBenchmarkCuDNN(get_bool(env, a.argv[0], "benchmark"));
  return make_undefined(env);
  DPO_CATCH(env)
}

// sdpBackends({flash?, efficient?, math?, cudnn?}?) -> the enabled set, after setting those given:
// which kernels scaled_dot_product_attention may pick (torch.backends.cuda.enable_*_sdp). The CPU
// has flash and math; CUDA has all four.
napi_value sdp_backends(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& ctx = at::globalContext();
  if (!is_nullish(env, a.argv[0])) {
    const auto set = [&](const char* name, void (at::Context::*setter)(bool)) {
      napi_value v;
      bool has = false;
      napi_has_named_property(env, a.argv[0], name, &has);
      if (!has) return;
      napi_get_named_property(env, a.argv[0], name, &v);
      (ctx.*setter)(get_bool(env, v, name));
    };
    set("flash", &at::Context::setSDPUseFlash);
    set("efficient", &at::Context::setSDPUseMemEfficient);
    set("math", &at::Context::setSDPUseMath);
    set("cudnn", &at::Context::setSDPUseCuDNN);
  }
  napi_value o = make_object(env);
  set_named(env, o, "flash", make_bool(env, ctx.userEnabledFlashSDP()));
  set_named(env, o, "efficient", make_bool(env, ctx.userEnabledMemEfficientSDP()));
  set_named(env, o, "math", make_bool(env, ctx.userEnabledMathSDP()));
  set_named(env, o, "cudnn", make_bool(env, ctx.userEnabledCuDNNSDP()));
  return o;
  DPO_CATCH(env)
}

// mathSettings() -> {tf32Matmul, tf32Cudnn, cudnnBenchmark, deterministic}: what doctor reports.
napi_value math_settings(napi_env env, napi_callback_info info) {
  DPO_TRY
  auto& ctx = at::globalContext();
  napi_value o = make_object(env);
  set_named(env, o, "tf32Matmul", make_bool(env, ctx.float32MatmulPrecision() != at::Float32MatmulPrecision::HIGHEST));
  set_named(env, o, "tf32Cudnn", make_bool(env, ctx.allowTF32CuDNN()));
  set_named(env, o, "cudnnBenchmark", make_bool(env, ctx.benchmarkCuDNN()));
  set_named(env, o, "deterministic", make_bool(env, ctx.deterministicAlgorithms()));
  return o;
  DPO_CATCH(env)
}

}  // namespace

void exports_runtime(std::vector<Export>& out) {
  out.push_back({"buildInfo", build_info});
  out.push_back({"setNumThreads", set_num_threads});
  out.push_back({"getNumThreads", get_num_threads});
  out.push_back({"generatorDefault", generator_default});
  out.push_back({"generatorNew", generator_new});
  out.push_back({"generatorManualSeed", generator_manual_seed});
  out.push_back({"generatorInitialSeed", generator_initial_seed});
  out.push_back({"generatorDevice", generator_device});
  out.push_back({"generatorGetState", generator_get_state});
  out.push_back({"generatorSetState", generator_set_state});
  out.push_back({"manualSeed", manual_seed});
  out.push_back({"cudaSynchronize", cuda_synchronize});
  out.push_back({"cudaSynchronizeAsync", cuda_synchronize_async});
  out.push_back({"cudaDeviceInfo", cuda_device_info});
  out.push_back({"cudaEmptyCache", cuda_empty_cache});
  out.push_back({"cudaMemory", cuda_memory});
  out.push_back({"cudaResetPeak", cuda_reset_peak});
  out.push_back({"setAllowTF32", set_allow_tf32});
  out.push_back({"setDeterministic", set_deterministic});
  out.push_back({"exitNow", exit_now});
  out.push_back({"setCudnnBenchmark", set_cudnn_benchmark});
  out.push_back({"sdpBackends", sdp_backends});
  out.push_back({"mathSettings", math_settings});
}

}  // namespace dpo

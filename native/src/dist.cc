// c10d, PyTorch's distributed engine, for data-parallel training: a TCPStore rendezvous,
// ProcessGroupGloo (CPU tensors) and ProcessGroupNCCL (CUDA tensors; dist_nccl.cc), and the
// collectives the trainer needs. What torch.distributed does in Python, without Python: the
// process groups are libtorch's own classes, so the wire protocol, algorithms and timeouts are
// PyTorch's.
//
// Built with DPO_WITH_GLOO when the build found gloo's headers (ProcessGroupGloo.hpp includes them;
// the pip wheel ships none, so scripts/gloo-headers.js fetches Debian's libgloo-dev for the
// headers only: the code is in libtorch_cpu). Without them every entry point throws a message
// saying so.
//
// Collectives are enqueued on the JS thread (they return at once: Gloo runs them on its own
// threads, NCCL on its own stream) and waited for on a libuv thread (distWait), so the event loop
// (signals, data loading) keeps running while bytes move.
#include "common.h"
#include "dist.h"

#ifdef DPO_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <functional>
#include <memory>

namespace dpo {
namespace {

#ifdef DPO_WITH_GLOO

// --- externals: type-tagged boxes for the store, the groups and pending works -----------------
constexpr napi_type_tag kStoreTag = {0x6470'6f5f'7374'6f72ULL, 0x6531'0000'0000'0001ULL};
constexpr napi_type_tag kGroupTag = {0x6470'6f5f'6772'6f75ULL, 0x7031'0000'0000'0002ULL};
constexpr napi_type_tag kWorkTag = {0x6470'6f5f'776f'726bULL, 0x3100'0000'0000'0003ULL};

struct StoreBox {
  c10::intrusive_ptr<c10d::Store> store;
};
struct GroupBox {
  c10::intrusive_ptr<c10d::Backend> backend;
  std::string kind;
  int rank = 0;
  int size = 1;
};
// A pending collective and its tensors (kept alive until it is done); emptied after distWait.
struct WorkSlot {
  c10::intrusive_ptr<c10d::Work> work;
  std::vector<at::Tensor> tensors;
};
struct WorkBox {
  std::shared_ptr<WorkSlot> slot;
};

template <typename T>
napi_value wrap(napi_env env, T* box, const napi_type_tag& tag) {
  napi_value ext;
  check(env, napi_create_external(env, box, [](napi_env, void* data, void*) { delete static_cast<T*>(data); }, nullptr, &ext),
        "external");
  check(env, napi_type_tag_object(env, ext, &tag), "type tag");
  return ext;
}

template <typename T>
T* unwrap(napi_env env, napi_value v, const napi_type_tag& tag, const char* what) {
  bool tagged = false;
  if (type_of(env, v) != napi_external || napi_check_object_type_tag(env, v, &tag, &tagged) != napi_ok || !tagged)
    throw ArgError(std::string("expected a ") + what);
  void* data;
  check(env, napi_get_value_external(env, v, &data), what);
  return static_cast<T*>(data);
}

GroupBox& group_of(napi_env env, napi_value v) {
  auto* g = unwrap<GroupBox>(env, v, kGroupTag, "process group");
  if (!g->backend) throw std::runtime_error("the process group was destroyed");
  return *g;
}

std::vector<at::Tensor> tensor_list(napi_env env, napi_value v, const char* what) {
  bool is_array = false;
  check(env, napi_is_array(env, v, &is_array), what);
  if (!is_array) throw ArgError(std::string(what) + ": expected an array of tensors");
  uint32_t n = 0;
  check(env, napi_get_array_length(env, v, &n), what);
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    check(env, napi_get_element(env, v, i, &e), what);
    out.push_back(get_tensor(get_double(env, e, what)));
  }
  return out;
}

c10d::ReduceOp reduce_op(const std::string& name) {
  if (name == "sum") return c10d::ReduceOp::SUM;
  if (name == "avg") return c10d::ReduceOp::AVG;
  if (name == "max") return c10d::ReduceOp::MAX;
  if (name == "min") return c10d::ReduceOp::MIN;
  if (name == "product") return c10d::ReduceOp::PRODUCT;
  throw ArgError("unknown reduce op '" + name + "' (sum, avg, max, min, product)");
}

// --- exports -----------------------------------------------------------------------------------

// distBackends() -> {gloo, nccl}: what this build can create.
napi_value dist_backends(napi_env env, napi_callback_info) {
  DPO_TRY
  napi_value o = make_object(env);
  set_named(env, o, "gloo", make_bool(env, true));
  set_named(env, o, "nccl", make_bool(env, nccl_compiled()));
  return o;
  DPO_CATCH(env)
}

// distStore(host, port, isServer, worldSize, timeoutMs) -> Promise<Store>. The server (rank 0)
// listens on port; clients connect, retrying until the timeout. The server waits for every worker.
napi_value dist_store(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto host = get_string(env, a.argv[0], "host");
  c10d::TCPStoreOptions opts;
  const int64_t port = get_int(env, a.argv[1], "port");
  if (port < 1 || port > 65535) throw ArgError("port must be in 1..65535");
  opts.port = static_cast<std::uint16_t>(port);
  opts.isServer = get_bool(env, a.argv[2], "isServer");
  opts.numWorkers = static_cast<std::size_t>(get_int(env, a.argv[3], "worldSize"));
  opts.waitWorkers = true;
  opts.timeout = std::chrono::milliseconds(get_int(env, a.argv[4], "timeoutMs"));
  auto box = std::make_shared<StoreBox>();
  return run_async(env, "distStore",
      [box, host, opts]() { box->store = c10::make_intrusive<c10d::TCPStore>(host, opts); },
      [box](napi_env env) { return wrap(env, new StoreBox{box->store}, kStoreTag); });
  DPO_CATCH(env)
}

// distStoreSet(store, key, value), distStoreAdd(store, key, n) -> number, distStoreGet(store, key) -> Promise<string>
napi_value dist_store_set(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto* s = unwrap<StoreBox>(env, a.argv[0], kStoreTag, "store");
  auto value = get_string(env, a.argv[2], "value");
  s->store->set(get_string(env, a.argv[1], "key"), std::vector<uint8_t>(value.begin(), value.end()));
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value dist_store_add(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto* s = unwrap<StoreBox>(env, a.argv[0], kStoreTag, "store");
  return make_int(env, s->store->add(get_string(env, a.argv[1], "key"), get_int(env, a.argv[2], "n")));
  DPO_CATCH(env)
}

napi_value dist_store_get(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto store = unwrap<StoreBox>(env, a.argv[0], kStoreTag, "store")->store;
  auto key = get_string(env, a.argv[1], "key");
  auto value = std::make_shared<std::vector<uint8_t>>();
  return run_async(env, "distStoreGet", [store, key, value]() { *value = store->get(key); },
      [value](napi_env env) { return make_string(env, std::string(value->begin(), value->end())); });
  DPO_CATCH(env)
}

// distGroup(store, backend, rank, size, timeoutMs, prefix, deviceIndex) -> Promise<Group>. The
// group's keys live under `prefix` in the store, so several groups share one rendezvous.
napi_value dist_group(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto store = unwrap<StoreBox>(env, a.argv[0], kStoreTag, "store")->store;
  auto kind = get_string(env, a.argv[1], "backend");
  const int rank = static_cast<int>(get_int(env, a.argv[2], "rank"));
  const int size = static_cast<int>(get_int(env, a.argv[3], "size"));
  const auto timeout = std::chrono::milliseconds(get_int(env, a.argv[4], "timeoutMs"));
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>(get_string(env, a.argv[5], "prefix"), store);
  const int device = is_nullish(env, a.argv[6]) ? 0 : static_cast<int>(get_int(env, a.argv[6], "deviceIndex"));
  if (kind != "gloo" && kind != "nccl") throw ArgError("backend must be gloo or nccl");
  if (rank < 0 || rank >= size) throw ArgError("rank outside 0..size-1");
  auto box = std::make_shared<GroupBox>();
  box->kind = kind;
  box->rank = rank;
  box->size = size;
  return run_async(env, "distGroup",
      [box, prefixed, kind, rank, size, timeout, device]() {
        if (kind == "nccl") {
          box->backend = make_nccl_backend(prefixed, rank, size, timeout, device);
          return;
        }
        auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
        // as torch.distributed: GLOO_SOCKET_IFNAME names the interface(s), else the hostname's address
        const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
        if (ifname && *ifname) {
          std::string names(ifname);
          size_t start = 0;
          while (start <= names.size()) {
            size_t end = names.find(',', start);
            if (end == std::string::npos) end = names.size();
            if (end > start) opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(names.substr(start, end - start)));
            start = end + 1;
          }
        } else {
          opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        }
        box->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, rank, size, opts);
      },
      [box](napi_env env) { return wrap(env, new GroupBox(*box), kGroupTag); });
  DPO_CATCH(env)
}

// distGroupDestroy(group, abort): releases the backend (joins Gloo's threads; NCCL's communicators
// are shut down, or aborted after a failure: a shutdown waits for work a dead peer never completes).
napi_value dist_group_destroy(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto* g = unwrap<GroupBox>(env, a.argv[0], kGroupTag, "process group");
  const bool abort = get_bool(env, a.argv[1], "abort");
  if (g->backend) {
    if (g->kind == "nccl") {
      if (abort) g->backend->abort();
      else g->backend->shutdown();
    }
    g->backend.reset();
  }
  return make_undefined(env);
  DPO_CATCH(env)
}

napi_value wrap_work(napi_env env, c10::intrusive_ptr<c10d::Work> work, std::vector<at::Tensor> tensors) {
  return wrap(env, new WorkBox{std::make_shared<WorkSlot>(WorkSlot{std::move(work), std::move(tensors)})}, kWorkTag);
}

// distAllReduce(group, tensor, op) -> Work: in place, the tensor reduced across the ranks. One
// tensor per call: a bucket of gradients is flattened into one first, as DDP does.
napi_value dist_all_reduce(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& g = group_of(env, a.argv[0]);
  std::vector<at::Tensor> tensors{get_tensor(get_double(env, a.argv[1], "tensor"))};
  c10d::AllreduceOptions opts;
  opts.reduceOp = reduce_op(get_string(env, a.argv[2], "op"));
  if (opts.reduceOp == c10d::ReduceOp::AVG && g.kind == "gloo") throw ArgError("Gloo has no avg reduction: reduce with sum and divide");
  return wrap_work(env, g.backend->allreduce(tensors, opts), tensors);
  DPO_CATCH(env)
}

// distBroadcast(group, tensor, root) -> Work
napi_value dist_broadcast(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& g = group_of(env, a.argv[0]);
  std::vector<at::Tensor> tensors{get_tensor(get_double(env, a.argv[1], "tensor"))};
  c10d::BroadcastOptions opts;
  opts.rootRank = get_int(env, a.argv[2], "root");
  return wrap_work(env, g.backend->broadcast(tensors, opts), tensors);
  DPO_CATCH(env)
}

// distAllGather(group, outputs, input) -> Work: outputs[r] receives rank r's input.
napi_value dist_all_gather(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& g = group_of(env, a.argv[0]);
  std::vector<std::vector<at::Tensor>> outputs{tensor_list(env, a.argv[1], "outputs")};
  std::vector<at::Tensor> inputs{get_tensor(get_double(env, a.argv[2], "input"))};
  if (static_cast<int>(outputs[0].size()) != g.size) throw ArgError("allGather needs one output per rank");
  auto keep = outputs[0];
  keep.push_back(inputs[0]);
  return wrap_work(env, g.backend->allgather(outputs, inputs), keep);
  DPO_CATCH(env)
}

// distReduceScatter(group, output, inputs, op) -> Work: output = reduction over ranks of inputs[rank].
napi_value dist_reduce_scatter(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& g = group_of(env, a.argv[0]);
  std::vector<at::Tensor> outputs{get_tensor(get_double(env, a.argv[1], "output"))};
  std::vector<std::vector<at::Tensor>> inputs{tensor_list(env, a.argv[2], "inputs")};
  if (static_cast<int>(inputs[0].size()) != g.size) throw ArgError("reduceScatter needs one input per rank");
  c10d::ReduceScatterOptions opts;
  opts.reduceOp = reduce_op(get_string(env, a.argv[3], "op"));
  auto keep = inputs[0];
  keep.push_back(outputs[0]);
  return wrap_work(env, g.backend->reduce_scatter(outputs, inputs, opts), keep);
  DPO_CATCH(env)
}

// distBarrier(group) -> Work
napi_value dist_barrier(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto& g = group_of(env, a.argv[0]);
  return wrap_work(env, g.backend->barrier(), {});
  DPO_CATCH(env)
}

// distWait(works, timeoutMs) -> Promise<void>: waits for each work in order on a libuv thread. For
// NCCL, wait() orders the current stream after the collective and returns (the host does not wait).
napi_value dist_wait(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  bool is_array = false;
  check(env, napi_is_array(env, a.argv[0], &is_array), "works");
  if (!is_array) throw ArgError("works: expected an array");
  uint32_t n = 0;
  check(env, napi_get_array_length(env, a.argv[0], &n), "works");
  auto slots = std::make_shared<std::vector<std::shared_ptr<WorkSlot>>>();
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    check(env, napi_get_element(env, a.argv[0], i, &e), "works");
    slots->push_back(unwrap<WorkBox>(env, e, kWorkTag, "collective's work")->slot);
  }
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  for (auto& slot : *slots) if (slot->work) works.push_back(slot->work);  // a work already waited for is done
  const auto timeout = std::chrono::milliseconds(get_int(env, a.argv[1], "timeoutMs"));
  return run_async(env, "distWait",
      [works, timeout]() {
        for (auto& work : works) work->wait(timeout);
      },
      [slots](napi_env env) {
        for (auto& slot : *slots) *slot = WorkSlot{};  // release the tensors on the JS thread
        return make_undefined(env);
      });
  DPO_CATCH(env)
}

#else  // !DPO_WITH_GLOO

napi_value dist_backends(napi_env env, napi_callback_info) {
  DPO_TRY
  napi_value o = make_object(env);
  set_named(env, o, "gloo", make_bool(env, false));
  set_named(env, o, "nccl", make_bool(env, false));
  return o;
  DPO_CATCH(env)
}

napi_value dist_unavailable(napi_env env, napi_callback_info) {
  DPO_TRY
  throw std::runtime_error(
      "this build of the addon has no distributed support: gloo's headers were not found when it was built "
      "(see docs/distributed.md: set DPO_GLOO_INCLUDE or let setup fetch them, then npm run build:native -- --force)");
  DPO_CATCH(env)
}

#endif

}  // namespace

#ifdef DPO_WITH_GLOO
c10::intrusive_ptr<c10d::Backend> group_backend(napi_env env, napi_value group) {
  return group_of(env, group).backend;
}
#endif

void exports_dist(std::vector<Export>& out) {
  out.push_back({"distBackends", dist_backends});
#ifdef DPO_WITH_GLOO
  out.push_back({"distStore", dist_store});
  out.push_back({"distStoreSet", dist_store_set});
  out.push_back({"distStoreAdd", dist_store_add});
  out.push_back({"distStoreGet", dist_store_get});
  out.push_back({"distGroup", dist_group});
  out.push_back({"distGroupDestroy", dist_group_destroy});
  out.push_back({"distAllReduce", dist_all_reduce});
  out.push_back({"distBroadcast", dist_broadcast});
  out.push_back({"distAllGather", dist_all_gather});
  out.push_back({"distReduceScatter", dist_reduce_scatter});
  out.push_back({"distBarrier", dist_barrier});
  out.push_back({"distWait", dist_wait});
  exports_dist_reducer(out);
#else
  for (const char* name : {"distStore", "distStoreSet", "distStoreAdd", "distStoreGet", "distGroup", "distGroupDestroy",
                           "distAllReduce", "distBroadcast", "distAllGather", "distReduceScatter", "distBarrier", "distWait",
                           "distReducer", "distReducerArm", "distReducerFinish", "distReducerReadyOrder", "distReducerRebucket"})
    out.push_back({name, dist_unavailable});
#endif
}

}  // namespace dpo

// The handle table, the error boundary and the Node-API helpers declared in common.h.
#include "common.h"

#include <c10/util/Exception.h>

#include <exception>

namespace dpo {

// ------------------------------------------------------------------------------------ handles

namespace {
constexpr double kSlotSpan = 16777216.0;  // 2^24 slots
constexpr uint64_t kMaxGeneration = (uint64_t(1) << 29) - 1;

struct Slot {
  at::Tensor tensor;
  uint64_t generation = 1;
  int64_t reported_bytes = 0;  // CPU bytes told to V8 through napi_adjust_external_memory
};
std::vector<Slot> g_slots;
std::vector<uint32_t> g_free;
int64_t g_live = 0;
int64_t g_peak = 0;

// Fresh CPU storages are reported to V8 so that a program which forgets to dispose still makes
// the GC run sooner (the safety net). Shared storages (views) are not counted twice, and device
// memory is never reported: V8's heuristics know nothing of an 80 GB GPU.
int64_t reportable_bytes(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || !t.has_storage()) return 0;
  const auto& storage = t.storage();
  if (storage.use_count() != 1) return 0;
  return static_cast<int64_t>(storage.nbytes());
}

// V8 is told about external memory in batches: calling napi_adjust_external_memory for every
// small tensor would cost two V8 calls per op; the count V8 sees is off by at most 1 MiB.
int64_t g_pending_bytes = 0;
constexpr int64_t kReportBatch = 1 << 20;
inline void account(napi_env env, int64_t delta) {
  g_pending_bytes += delta;
  if (g_pending_bytes >= kReportBatch || g_pending_bytes <= -kReportBatch) {
    int64_t ignored;
    napi_adjust_external_memory(env, g_pending_bytes, &ignored);
    g_pending_bytes = 0;
  }
}

inline Slot* slot_of(double handle) {
  if (!(handle >= 0)) return nullptr;
  const uint64_t h = static_cast<uint64_t>(handle);
  const uint64_t index = h & 0xFFFFFF;
  const uint64_t generation = h >> 24;
  if (index >= g_slots.size()) return nullptr;
  Slot& s = g_slots[index];
  if (s.generation != generation || !s.tensor.defined()) return nullptr;
  return &s;
}
}  // namespace

double put_tensor(napi_env env, at::Tensor t) {
  uint32_t index;
  if (!g_free.empty()) {
    index = g_free.back();
    g_free.pop_back();
  } else {
    if (g_slots.size() >= (size_t(1) << 24)) throw std::runtime_error("too many live tensors (16M)");
    index = static_cast<uint32_t>(g_slots.size());
    g_slots.emplace_back();
  }
  Slot& s = g_slots[index];
  s.reported_bytes = reportable_bytes(t);
  s.tensor = std::move(t);
  if (s.reported_bytes > 0) account(env, s.reported_bytes);
  if (++g_live > g_peak) g_peak = g_live;
  return static_cast<double>(s.generation) * kSlotSpan + index;
}

const at::Tensor& get_tensor(double handle) {
  Slot* s = slot_of(handle);
  if (!s) throw HandleError("tensor was disposed (or is not a tensor handle)");
  return s->tensor;
}

bool release_tensor(napi_env env, double handle) {
  Slot* s = slot_of(handle);
  if (!s) return false;
  s->tensor = at::Tensor();
  if (s->reported_bytes > 0) {
    account(env, -s->reported_bytes);
    s->reported_bytes = 0;
  }
  s->generation = s->generation >= kMaxGeneration ? 1 : s->generation + 1;
  g_free.push_back(static_cast<uint32_t>(s - g_slots.data()));
  --g_live;
  return true;
}

int64_t live_tensor_count() { return g_live; }
int64_t peak_tensor_count() { return g_peak; }

// ------------------------------------------------------------------------------------- errors

namespace {
enum class JsKind { Error, TypeError, RangeError };

void throw_js(napi_env env, JsKind kind, const char* code, const std::string& message,
              const std::string& cpp_stack) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;  // a JS exception (e.g. from a getter) is already on its way
  napi_value msg, code_value, error;
  napi_create_string_utf8(env, message.c_str(), message.size(), &msg);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
  switch (kind) {
    case JsKind::TypeError: napi_create_type_error(env, code_value, msg, &error); break;
    case JsKind::RangeError: napi_create_range_error(env, code_value, msg, &error); break;
    default: napi_create_error(env, code_value, msg, &error); break;
  }
  if (!cpp_stack.empty()) {
    napi_value stack;
    napi_create_string_utf8(env, cpp_stack.c_str(), cpp_stack.size(), &stack);
    napi_set_named_property(env, error, "cppStack", stack);
  }
  napi_throw(env, error);
}
}  // namespace

// Most specific first; catching by const reference keeps c10's subclasses intact.
void throw_current_exception(napi_env env) {
  try {
    throw;
  } catch (const c10::OutOfMemoryError& e) {
    throw_js(env, JsKind::Error, "TORCH_OOM", e.what_without_backtrace(), e.what());
  } catch (const c10::IndexError& e) {
    throw_js(env, JsKind::RangeError, "TORCH_INDEX_ERROR", e.what_without_backtrace(), e.what());
  } catch (const c10::TypeError& e) {
    throw_js(env, JsKind::TypeError, "TORCH_TYPE_ERROR", e.what_without_backtrace(), e.what());
  } catch (const c10::ValueError& e) {
    throw_js(env, JsKind::Error, "TORCH_VALUE_ERROR", e.what_without_backtrace(), e.what());
  } catch (const c10::NotImplementedError& e) {
    throw_js(env, JsKind::Error, "TORCH_NOT_IMPLEMENTED", e.what_without_backtrace(), e.what());
  } catch (const c10::LinAlgError& e) {
    throw_js(env, JsKind::Error, "TORCH_LINALG_ERROR", e.what_without_backtrace(), e.what());
  } catch (const c10::Error& e) {
    throw_js(env, JsKind::Error, "TORCH_ERROR", e.what_without_backtrace(), e.what());
  } catch (const HandleError& e) {
    throw_js(env, JsKind::Error, "TENSOR_DISPOSED", e.what(), "");
  } catch (const ArgError& e) {
    throw_js(env, JsKind::TypeError, "ERR_INVALID_ARG", e.what(), "");
  } catch (const std::bad_alloc&) {
    throw_js(env, JsKind::Error, "TORCH_OOM", "out of host memory (std::bad_alloc)", "");
  } catch (const std::exception& e) {
    throw_js(env, JsKind::Error, "TORCH_ERROR", e.what(), "");
  } catch (...) {
    throw_js(env, JsKind::Error, "TORCH_ERROR", "unknown native exception", "");
  }
}

// ------------------------------------------------------------------------------------ helpers

void check(napi_env env, napi_status status, const char* what) {
  if (status == napi_ok) return;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) throw ArgError(std::string("JS exception while reading ") + what);
  throw ArgError(std::string("invalid argument: ") + what);
}

Args::Args(napi_env env, napi_callback_info info) {
  argc = kMax;
  // napi_get_cb_info fills the slots past the actual count with undefined.
  check(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr), "arguments");
  if (argc > kMax) throw ArgError("too many arguments");
}

napi_valuetype type_of(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t;
}

bool is_nullish(napi_env env, napi_value v) {
  const auto t = type_of(env, v);
  return t == napi_undefined || t == napi_null;
}

double get_double(napi_env env, napi_value v, const char* what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) throw ArgError(std::string(what) + ": expected a number");
  return d;
}

int64_t get_int(napi_env env, napi_value v, const char* what) {
  napi_valuetype t = type_of(env, v);
  if (t == napi_bigint) {
    int64_t i;
    bool lossless;
    napi_get_value_bigint_int64(env, v, &i, &lossless);
    return i;
  }
  if (t == napi_boolean) return get_bool(env, v, what) ? 1 : 0;
  double d = get_double(env, v, what);
  if (d != static_cast<double>(static_cast<int64_t>(d)))
    throw ArgError(std::string(what) + ": expected an integer, got " + std::to_string(d));
  return static_cast<int64_t>(d);
}

bool get_bool(napi_env env, napi_value v, const char* what) {
  bool b;
  if (napi_get_value_bool(env, v, &b) != napi_ok) throw ArgError(std::string(what) + ": expected a boolean");
  return b;
}

std::string get_string(napi_env env, napi_value v, const char* what) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, nullptr, 0, &len) != napi_ok)
    throw ArgError(std::string(what) + ": expected a string");
  std::string s(len, '\0');
  napi_get_value_string_utf8(env, v, s.data(), len + 1, &len);
  return s;
}

std::vector<int64_t> get_int_list(napi_env env, napi_value v, const char* what) {
  bool is_array = false;
  napi_is_array(env, v, &is_array);
  if (!is_array) throw ArgError(std::string(what) + ": expected an array of integers");
  uint32_t n;
  napi_get_array_length(env, v, &n);
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; ++i) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    out[i] = get_int(env, e, what);
  }
  return out;
}

napi_value make_double(napi_env env, double d) {
  napi_value v;
  napi_create_double(env, d, &v);
  return v;
}
napi_value make_int(napi_env env, int64_t i) {
  napi_value v;
  napi_create_int64(env, i, &v);
  return v;
}
napi_value make_bool(napi_env env, bool b) {
  napi_value v;
  napi_get_boolean(env, b, &v);
  return v;
}
napi_value make_string(napi_env env, const std::string& s) {
  napi_value v;
  napi_create_string_utf8(env, s.c_str(), s.size(), &v);
  return v;
}
napi_value make_undefined(napi_env env) {
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}
napi_value make_null(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}
napi_value make_array(napi_env env, size_t n) {
  napi_value v;
  napi_create_array_with_length(env, n, &v);
  return v;
}
void set_element(napi_env env, napi_value arr, uint32_t i, napi_value v) { napi_set_element(env, arr, i, v); }
void set_named(napi_env env, napi_value obj, const char* name, napi_value v) {
  napi_set_named_property(env, obj, name, v);
}
napi_value make_object(napi_env env) {
  napi_value v;
  napi_create_object(env, &v);
  return v;
}
napi_value make_tensor(napi_env env, at::Tensor t) {
  if (!t.defined()) return make_null(env);
  return make_double(env, put_tensor(env, std::move(t)));
}

c10::Device parse_device(const std::string& s) { return c10::Device(s); }

std::string device_string(const c10::Device& d) { return d.str(); }

// ---------------------------------------------------------------------------------- generators

namespace {
const napi_type_tag kGeneratorTag = {0x8d1f3c0a5b2e4f61ULL, 0x9a7c6e5d4b3a2910ULL};
struct GeneratorBox {
  at::Generator generator;
};
void finalize_generator(napi_env, void* data, void*) { delete static_cast<GeneratorBox*>(data); }
}  // namespace

at::Generator get_generator(napi_env env, napi_value v) {
  bool tagged = false;
  if (type_of(env, v) != napi_external || napi_check_object_type_tag(env, v, &kGeneratorTag, &tagged) != napi_ok ||
      !tagged)
    throw ArgError("expected a Generator");
  void* data;
  check(env, napi_get_value_external(env, v, &data), "generator");
  return static_cast<GeneratorBox*>(data)->generator;
}

napi_value wrap_generator(napi_env env, at::Generator g) {
  auto* box = new GeneratorBox{std::move(g)};
  napi_value ext;
  check(env, napi_create_external(env, box, finalize_generator, nullptr, &ext), "generator");
  check(env, napi_type_tag_object(env, ext, &kGeneratorTag), "generator tag");
  return ext;
}

}  // namespace dpo

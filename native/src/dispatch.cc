// Every aten operator reaches JS through one generic entry: opHandle(name, overload) looks the
// operator up in the c10 dispatcher once, classifies its schema arguments, and callOp(id, ...)
// converts JS values by that classification, runs the operator boxed (as TorchScript and
// torch.ops do, so autograd and autocast apply as usual) and converts the results back.
//
// JS conventions: a tensor is its handle (number); undefined takes the schema default; null is
// None for optional arguments; dtypes, layouts and memory formats are their c10 integer codes;
// devices are strings; generators are Generator externals. An in-place or out= operator whose
// single result aliases an input returns undefined (the JS side returns `this`).
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>

#include <unordered_map>

#include "common.h"

namespace dpo {
namespace {

enum class Kind : uint8_t {
  Tensor, TensorList, OptTensorList, Int, IntList, Float, FloatList, Bool, BoolList, Scalar, ScalarList,
  Device, Str, Generator, Unsupported
};

struct ArgSpec {
  Kind kind;
  bool optional;
  int32_t fixed_size;  // N of int[N] (a single number is repeated N times), else 0
  std::string name;
  c10::optional<c10::IValue> default_value;
};

enum class ReturnKind : uint8_t { Tensor, TensorList, Number, Bool, Unsupported };

struct OpInfo {
  c10::OperatorHandle handle;
  std::string name;
  std::vector<ArgSpec> args;
  std::vector<ReturnKind> returns;
  bool returns_self_alias;  // single Tensor(a!) result: JS returns the input object
};

std::vector<OpInfo> g_ops;
std::unordered_map<std::string, uint32_t> g_op_ids;

Kind classify_scalar(const c10::TypePtr& t) {
  using c10::TypeKind;
  switch (t->kind()) {
    case TypeKind::TensorType: return Kind::Tensor;
    case TypeKind::IntType:
    case TypeKind::SymIntType:
    case TypeKind::ScalarTypeType:
    case TypeKind::LayoutType:
    case TypeKind::MemoryFormatType: return Kind::Int;
    case TypeKind::FloatType:
    case TypeKind::SymFloatType: return Kind::Float;
    case TypeKind::BoolType:
    case TypeKind::SymBoolType: return Kind::Bool;
    case TypeKind::NumberType: return Kind::Scalar;
    case TypeKind::DeviceObjType: return Kind::Device;
    case TypeKind::StringType: return Kind::Str;
    case TypeKind::GeneratorType: return Kind::Generator;
    default: return Kind::Unsupported;
  }
}

ArgSpec classify(const c10::Argument& a) {
  ArgSpec spec{Kind::Unsupported, false, 0, a.name(), a.default_value()};
  c10::TypePtr t = a.type();
  if (t->kind() == c10::TypeKind::OptionalType) {
    spec.optional = true;
    t = t->castRaw<c10::OptionalType>()->getElementType();
  }
  if (t->kind() == c10::TypeKind::ListType) {
    c10::TypePtr elem = t->castRaw<c10::ListType>()->getElementType();
    if (elem->kind() == c10::TypeKind::OptionalType) {
      auto inner = elem->castRaw<c10::OptionalType>()->getElementType();
      spec.kind = inner->kind() == c10::TypeKind::TensorType ? Kind::OptTensorList : Kind::Unsupported;
      return spec;
    }
    switch (classify_scalar(elem)) {
      case Kind::Tensor: spec.kind = Kind::TensorList; break;
      case Kind::Int: spec.kind = Kind::IntList; break;
      case Kind::Float: spec.kind = Kind::FloatList; break;
      case Kind::Bool: spec.kind = Kind::BoolList; break;
      case Kind::Scalar: spec.kind = Kind::ScalarList; break;
      default: spec.kind = Kind::Unsupported;
    }
    if (a.N()) spec.fixed_size = static_cast<int32_t>(*a.N());
    return spec;
  }
  spec.kind = classify_scalar(t);
  return spec;
}

ReturnKind classify_return(const c10::Argument& r) {
  const c10::TypePtr& t = r.type();
  switch (t->kind()) {
    case c10::TypeKind::TensorType: return ReturnKind::Tensor;
    case c10::TypeKind::ListType:
      return t->castRaw<c10::ListType>()->getElementType()->kind() == c10::TypeKind::TensorType
                 ? ReturnKind::TensorList
                 : ReturnKind::Unsupported;
    case c10::TypeKind::IntType:
    case c10::TypeKind::SymIntType:
    case c10::TypeKind::FloatType:
    case c10::TypeKind::NumberType: return ReturnKind::Number;
    case c10::TypeKind::BoolType: return ReturnKind::Bool;
    default: return ReturnKind::Unsupported;
  }
}

bool is_array(napi_env env, napi_value v) {
  bool r = false;
  napi_is_array(env, v, &r);
  return r;
}

[[noreturn]] void bad_arg(const OpInfo& op, const ArgSpec& spec, const char* expected) {
  throw ArgError(op.name + ": argument '" + spec.name + "' must be " + expected);
}

// A JS number becomes an int64 Scalar when it is integral, else a double, as Python's int/float.
c10::IValue to_scalar(napi_env env, napi_value v, const OpInfo& op, const ArgSpec& spec) {
  switch (type_of(env, v)) {
    case napi_boolean: return c10::IValue(get_bool(env, v, "scalar"));
    case napi_bigint: return c10::IValue(get_int(env, v, "scalar"));
    case napi_number: {
      double d;
      napi_get_value_double(env, v, &d);
      if (d == static_cast<double>(static_cast<int64_t>(d)) && std::abs(d) < 9.007199254740992e15)
        return c10::IValue(static_cast<int64_t>(d));
      return c10::IValue(d);
    }
    default: bad_arg(op, spec, "a number or boolean");
  }
}

c10::IValue convert_value(napi_env env, napi_value v, const OpInfo& op, const ArgSpec& spec);

// Conversion errors always name the operator and the argument.
c10::IValue convert(napi_env env, napi_value v, const OpInfo& op, const ArgSpec& spec) {
  try {
    return convert_value(env, v, op, spec);
  } catch (const ArgError& e) {
    const std::string msg = e.what();
    if (msg.rfind(op.name, 0) == 0) throw;
    throw ArgError(op.name + ": argument '" + spec.name + "': " + msg);
  }
}

c10::IValue convert_value(napi_env env, napi_value v, const OpInfo& op, const ArgSpec& spec) {
  switch (spec.kind) {
    case Kind::Tensor: {
      double h;
      if (napi_get_value_double(env, v, &h) != napi_ok) bad_arg(op, spec, "a Tensor");
      return c10::IValue(get_tensor(h));
    }
    case Kind::Int:
      if (type_of(env, v) == napi_string) bad_arg(op, spec, "an integer");
      return c10::IValue(get_int(env, v, spec.name.c_str()));
    case Kind::Float: return c10::IValue(get_double(env, v, spec.name.c_str()));
    case Kind::Bool: return c10::IValue(get_bool(env, v, spec.name.c_str()));
    case Kind::Scalar: return to_scalar(env, v, op, spec);
    case Kind::Str: return c10::IValue(get_string(env, v, spec.name.c_str()));
    case Kind::Device: return c10::IValue(parse_device(get_string(env, v, spec.name.c_str())));
    case Kind::Generator: return c10::IValue(get_generator(env, v));
    case Kind::IntList: {
      if (!is_array(env, v)) {
        // int[2] stride=1 style: a single number stands for N copies.
        if (spec.fixed_size > 0 && type_of(env, v) == napi_number)
          return c10::IValue(std::vector<int64_t>(spec.fixed_size, get_int(env, v, spec.name.c_str())));
        bad_arg(op, spec, "an array of integers");
      }
      return c10::IValue(get_int_list(env, v, spec.name.c_str()));
    }
    case Kind::FloatList: {
      if (!is_array(env, v)) bad_arg(op, spec, "an array of numbers");
      uint32_t n;
      napi_get_array_length(env, v, &n);
      std::vector<double> out(n);
      for (uint32_t i = 0; i < n; ++i) {
        napi_value e;
        napi_get_element(env, v, i, &e);
        out[i] = get_double(env, e, spec.name.c_str());
      }
      return c10::IValue(out);
    }
    case Kind::ScalarList: {  // Scalar[]: a generic list of numbers (ints stay ints)
      if (!is_array(env, v)) bad_arg(op, spec, "an array of numbers");
      uint32_t n;
      napi_get_array_length(env, v, &n);
      c10::impl::GenericList out(c10::NumberType::get());
      out.reserve(n);
      for (uint32_t i = 0; i < n; ++i) {
        napi_value e;
        napi_get_element(env, v, i, &e);
        out.push_back(to_scalar(env, e, op, spec));
      }
      return c10::IValue(out);
    }
    case Kind::BoolList: {
      if (!is_array(env, v)) bad_arg(op, spec, "an array of booleans");
      uint32_t n;
      napi_get_array_length(env, v, &n);
      c10::List<bool> out;
      for (uint32_t i = 0; i < n; ++i) {
        napi_value e;
        napi_get_element(env, v, i, &e);
        out.push_back(get_bool(env, e, spec.name.c_str()));
      }
      return c10::IValue(out);
    }
    case Kind::TensorList:
    case Kind::OptTensorList: {
      if (!is_array(env, v)) bad_arg(op, spec, "an array of Tensors");
      uint32_t n;
      napi_get_array_length(env, v, &n);
      if (spec.kind == Kind::TensorList) {
        std::vector<at::Tensor> out;
        out.reserve(n);
        for (uint32_t i = 0; i < n; ++i) {
          napi_value e;
          napi_get_element(env, v, i, &e);
          out.push_back(get_tensor(get_double(env, e, spec.name.c_str())));
        }
        return c10::IValue(out);
      }
      c10::List<c10::optional<at::Tensor>> out;
      for (uint32_t i = 0; i < n; ++i) {
        napi_value e;
        napi_get_element(env, v, i, &e);
        if (is_nullish(env, e))
          out.push_back(c10::nullopt);
        else
          out.push_back(get_tensor(get_double(env, e, spec.name.c_str())));
      }
      return c10::IValue(out);
    }
    case Kind::Unsupported: break;
  }
  throw ArgError(op.name + ": argument '" + spec.name + "' has a type the binding does not support");
}

napi_value convert_return(napi_env env, c10::IValue& v, ReturnKind kind) {
  switch (kind) {
    case ReturnKind::Tensor: return make_tensor(env, std::move(v).toTensor());
    case ReturnKind::TensorList: {
      auto list = v.toTensorVector();
      napi_value arr = make_array(env, list.size());
      for (size_t i = 0; i < list.size(); ++i) set_element(env, arr, i, make_tensor(env, std::move(list[i])));
      return arr;
    }
    case ReturnKind::Number:
      if (v.isInt()) return make_double(env, static_cast<double>(v.toInt()));
      if (v.isDouble()) return make_double(env, v.toDouble());
      if (v.isBool()) return make_bool(env, v.toBool());
      return make_double(env, v.toScalar().toDouble());
    case ReturnKind::Bool: return make_bool(env, v.toBool());
    case ReturnKind::Unsupported: break;
  }
  throw std::runtime_error("operator returned a type the binding does not support");
}

// opHandle(name: string, overload: string) -> id
napi_value op_handle(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const std::string name = get_string(env, a.argv[0], "name");
  const std::string overload = is_nullish(env, a.argv[1]) ? "" : get_string(env, a.argv[1], "overload");
  const std::string key = name + "." + overload;
  auto found = g_op_ids.find(key);
  if (found != g_op_ids.end()) return make_int(env, found->second);
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) throw std::runtime_error("operator " + key + " is not in this libtorch (" + DPO_TORCH_VERSION + ")");
  OpInfo op{*handle, overload.empty() ? name : key, {}, {}, false};
  const auto& schema = handle->schema();
  for (const auto& arg : schema.arguments()) op.args.push_back(classify(arg));
  for (const auto& ret : schema.returns()) op.returns.push_back(classify_return(ret));
  op.returns_self_alias = schema.returns().size() == 1 && schema.returns()[0].alias_info() &&
                          schema.returns()[0].alias_info()->isWrite();
  g_ops.push_back(std::move(op));
  const uint32_t id = static_cast<uint32_t>(g_ops.size() - 1);
  g_op_ids.emplace(key, id);
  return make_int(env, id);
  DPO_CATCH(env)
}

// opSchema(id) -> the operator's schema string, for messages and the manifest check.
napi_value op_schema(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const int64_t id = get_int(env, a.argv[0], "op id");
  if (id < 0 || id >= static_cast<int64_t>(g_ops.size())) throw ArgError("unknown op id");
  return make_string(env, c10::toString(g_ops[id].handle.schema()));
  DPO_CATCH(env)
}

// callOp(id, ...args) -> tensor handle | array | number | boolean | undefined (in-place)
napi_value call_op(napi_env env, napi_callback_info info) {
  DPO_TRY
  constexpr size_t kMaxArgs = 24;
  size_t argc = kMaxArgs;
  napi_value argv[kMaxArgs];
  check(env, napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr), "arguments");
  uint32_t id;
  if (argc == 0 || napi_get_value_uint32(env, argv[0], &id) != napi_ok || id >= g_ops.size())
    throw ArgError("callOp: unknown op id");
  const OpInfo& op = g_ops[id];
  const size_t given = argc - 1;
  if (given > op.args.size())
    throw ArgError(op.name + ": expected at most " + std::to_string(op.args.size()) + " arguments, got " +
                   std::to_string(given));

  // One stack reused across calls (ops run on the JS thread only) avoids a heap allocation per op.
  // (a plain static, not thread_local: TLS in a shared object costs a __tls_get_addr call per op)
  static torch::jit::Stack stack;
  stack.clear();
  struct ClearOnExit {  // also on a throw: the stack must not keep tensors alive
    ~ClearOnExit() { stack.clear(); }
  } clear_on_exit;
  for (size_t i = 0; i < op.args.size(); ++i) {
    const ArgSpec& spec = op.args[i];
    napi_value v = i < given ? argv[i + 1] : nullptr;
    napi_valuetype t = napi_undefined;
    if (v) napi_typeof(env, v, &t);
    if (t == napi_undefined) {
      if (spec.default_value) {
        stack.emplace_back(*spec.default_value);
        continue;
      }
      if (spec.optional) {
        stack.emplace_back();
        continue;
      }
      throw ArgError(op.name + ": missing argument '" + spec.name + "'");
    }
    if (t == napi_null) {
      if (!spec.optional) bad_arg(op, spec, "given (it is not optional)");
      stack.emplace_back();
      continue;
    }
    stack.push_back(convert(env, v, op, spec));
  }

  op.handle.callBoxed(stack);

  if (op.returns_self_alias) return make_undefined(env);
  napi_value result;
  if (op.returns.size() == 1) {
    result = convert_return(env, stack[0], op.returns[0]);
  } else {
    result = make_array(env, op.returns.size());
    for (size_t i = 0; i < op.returns.size(); ++i)
      set_element(env, result, i, convert_return(env, stack[i], op.returns[i]));
  }
  return result;
  DPO_CATCH(env)
}

}  // namespace

void exports_dispatch(std::vector<Export>& out) {
  out.push_back({"opHandle", op_handle});
  out.push_back({"opSchema", op_schema});
  out.push_back({"callOp", call_op});
}

}  // namespace dpo

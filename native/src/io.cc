// File IO for weights: memory-mapped reads of raw tensor bytes (safetensors payloads and the
// stored entries of PyTorch zip checkpoints) and a streaming writer, so multi-GB checkpoints
// never pass through the JS heap. Parsing and validation of the formats live in TypeScript.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "common.h"

namespace dpo {
namespace {

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  std::string path;
  ~Mapping() {
    if (addr && size) munmap(addr, size);
  }
};

const napi_type_tag kMappingTag = {0x2f6b1e9d7c3a5b40ULL, 0x41d2c3b4a5968778ULL};
struct MappingBox {
  std::shared_ptr<Mapping> mapping;
};
void finalize_mapping(napi_env, void* data, void*) { delete static_cast<MappingBox*>(data); }

std::string errno_message(const std::string& what, const std::string& path) {
  return what + " '" + path + "': " + std::strerror(errno);
}

// mmapOpen(path) -> [mapping, byteLength]. The mapping is private copy-on-write: tensors that
// view it may be written in place without touching the file.
napi_value mmap_open(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const std::string path = get_string(env, a.argv[0], "path");
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(errno_message("cannot open", path));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    throw std::runtime_error(errno_message("cannot stat", path));
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->path = path;
  mapping->size = static_cast<size_t>(st.st_size);
  if (mapping->size > 0) {
    void* addr = mmap(nullptr, mapping->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      close(fd);
      throw std::runtime_error(errno_message("cannot map", path));
    }
    mapping->addr = addr;
  }
  close(fd);
  auto* box = new MappingBox{mapping};
  napi_value ext;
  check(env, napi_create_external(env, box, finalize_mapping, nullptr, &ext), "mapping");
  check(env, napi_type_tag_object(env, ext, &kMappingTag), "mapping tag");
  napi_value arr = make_array(env, 2);
  set_element(env, arr, 0, ext);
  set_element(env, arr, 1, make_double(env, static_cast<double>(mapping->size)));
  return arr;
  DPO_CATCH(env)
}

std::shared_ptr<Mapping> get_mapping(napi_env env, napi_value v) {
  bool tagged = false;
  if (type_of(env, v) != napi_external || napi_check_object_type_tag(env, v, &kMappingTag, &tagged) != napi_ok ||
      !tagged)
    throw ArgError("expected a file mapping");
  void* data;
  check(env, napi_get_value_external(env, v, &data), "mapping");
  return static_cast<MappingBox*>(data)->mapping;
}

// mmapTensor(mapping, byteOffset, dtype, shape, copy) -> handle over bytes [offset, offset+nbytes).
// Without copy the tensor views the mapping (pages are read when touched) and keeps it alive;
// a misaligned start is always copied, since kernels assume element alignment.
napi_value mmap_tensor(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  auto mapping = get_mapping(env, a.argv[0]);
  const int64_t offset = get_int(env, a.argv[1], "offset");
  const auto dtype = static_cast<at::ScalarType>(get_int(env, a.argv[2], "dtype"));
  const auto shape = get_int_list(env, a.argv[3], "shape");
  const bool copy = !is_nullish(env, a.argv[4]) && get_bool(env, a.argv[4], "copy");
  int64_t numel = 1;
  for (auto d : shape) {
    if (d < 0) throw ArgError("negative dimension in shape");
    numel *= d;
  }
  const int64_t nbytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
  if (offset < 0 || offset + nbytes > static_cast<int64_t>(mapping->size))
    throw std::out_of_range("tensor bytes [" + std::to_string(offset) + ", " + std::to_string(offset + nbytes) +
                            ") lie outside '" + mapping->path + "' (" + std::to_string(mapping->size) + " bytes)");
  auto options = at::TensorOptions().dtype(dtype);
  if (nbytes == 0) return make_tensor(env, at::empty(shape, options));
  char* start = static_cast<char*>(mapping->addr) + offset;
  const bool aligned = reinterpret_cast<uintptr_t>(start) % c10::elementSize(dtype) == 0;
  if (copy || !aligned) {
    at::Tensor t = at::empty(shape, options);
    std::memcpy(t.data_ptr(), start, static_cast<size_t>(nbytes));
    return make_tensor(env, std::move(t));
  }
  at::Tensor t = at::from_blob(
      start, shape, [keep = mapping](void*) mutable { keep.reset(); }, options);
  return make_tensor(env, std::move(t));
  DPO_CATCH(env)
}

// writeTensors(path, header: Buffer|null, handles[]) -> bytes written. Writes the header then each
// tensor's bytes (contiguous, row-major, moved to CPU), and fsyncs. The caller writes to a temp
// file and renames it, so a crash never leaves a half-written file under the final name.
napi_value write_tensors(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  const std::string path = get_string(env, a.argv[0], "path");
  std::vector<at::Tensor> tensors;
  {
    bool is_array = false;
    napi_is_array(env, a.argv[2], &is_array);
    if (!is_array) throw ArgError("writeTensors: expected an array of tensors");
    uint32_t n;
    napi_get_array_length(env, a.argv[2], &n);
    for (uint32_t i = 0; i < n; ++i) {
      napi_value e;
      napi_get_element(env, a.argv[2], i, &e);
      tensors.push_back(get_tensor(get_double(env, e, "tensor")));
    }
  }
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error(errno_message("cannot create", path));
  auto write_all = [&](const void* data, size_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        const std::string msg = errno_message("cannot write", path);
        close(fd);
        throw std::runtime_error(msg);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  };
  double total = 0;
  if (!is_nullish(env, a.argv[1])) {
    void* data;
    size_t len;
    check(env, napi_get_buffer_info(env, a.argv[1], &data, &len), "header buffer");
    write_all(data, len);
    total += len;
  }
  for (const auto& t : tensors) {
    at::Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
    write_all(host.data_ptr(), host.nbytes());
    total += host.nbytes();
  }
  if (fsync(fd) != 0) {
    const std::string msg = errno_message("cannot flush", path);
    close(fd);
    throw std::runtime_error(msg);
  }
  if (close(fd) != 0) throw std::runtime_error(errno_message("cannot close", path));
  return make_double(env, total);
  DPO_CATCH(env)
}

}  // namespace

void exports_io(std::vector<Export>& out) {
  out.push_back({"mmapOpen", mmap_open});
  out.push_back({"mmapTensor", mmap_tensor});
  out.push_back({"writeTensors", write_tensors});
}

}  // namespace dpo

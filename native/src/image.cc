// Pillow's antialiased resampling for 8-bit images (libImaging/Resample.c, Pillow 9-12), ported
// operation for operation so results are bit-identical to PIL's Image.resize, which torchvision's
// Resize runs on PIL images in the reference's transforms. In C++ rather than TypeScript because it
// is the data loader's hot loop (about 3x faster). Touches no global state: safe to call from the
// data loader's worker threads.
#include <cmath>
#include <cstring>
#include <vector>

#include "common.h"

namespace dpo {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

double filter_value(int filter, double x) {
  switch (filter) {
    case 0: {  // box
      return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    }
    case 1: {  // bilinear
      x = std::fabs(x);
      return x < 1.0 ? 1.0 - x : 0.0;
    }
    case 2: {  // bicubic, a = -0.5
      const double a = -0.5;
      x = std::fabs(x);
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    }
    default: {  // lanczos
      auto sinc = [](double t) { return t == 0.0 ? 1.0 : std::sin(M_PI * t) / (M_PI * t); };
      return (x > -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3) : 0.0;
    }
  }
}
const double kSupport[] = {0.5, 1.0, 2.0, 3.0};

struct Coeffs {
  int ksize;
  std::vector<int> bounds;
  std::vector<int32_t> kk;
};

// precompute_coeffs + normalize_coeffs_8bpc
Coeffs coefficients(int in_size, double in0, double in1, int out_size, int filter) {
  const double scale = (in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = kSupport[filter] * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.assign(out_size * 2, 0);
  c.kk.assign(static_cast<size_t>(out_size) * c.ksize, 0);
  std::vector<double> k(c.ksize);
  for (int xx = 0; xx < out_size; xx++) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double ww = 0.0;
    std::fill(k.begin(), k.end(), 0.0);
    for (int x = 0; x < xmax; x++) {
      const double w = filter_value(filter, (x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; x++) {
      const double v = ww != 0.0 ? k[x] / ww : k[x];
      c.kk[static_cast<size_t>(xx) * c.ksize + x] =
          v < 0 ? static_cast<int32_t>(-0.5 + v * (1 << kPrecisionBits)) : static_cast<int32_t>(0.5 + v * (1 << kPrecisionBits));
    }
    c.bounds[xx * 2] = xmin;
    c.bounds[xx * 2 + 1] = xmax;
  }
  return c;
}

inline uint8_t clip8(int32_t in) {
  const int32_t v = in >> kPrecisionBits;
  return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}

void horizontal(const uint8_t* src, int in_w, int ch, int y_first, int rows, int out_w, const Coeffs& c, uint8_t* out) {
  for (int yy = 0; yy < rows; yy++) {
    const uint8_t* row = src + static_cast<size_t>(yy + y_first) * in_w * ch;
    uint8_t* o = out + static_cast<size_t>(yy) * out_w * ch;
    for (int xx = 0; xx < out_w; xx++) {
      const int xmin = c.bounds[xx * 2];
      const int xmax = c.bounds[xx * 2 + 1];
      const int32_t* k = &c.kk[static_cast<size_t>(xx) * c.ksize];
      if (ch == 3) {  // RGB: one pass over the taps for all channels, as PIL's unrolled loop
        int32_t s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        const uint8_t* p = row + xmin * 3;
        for (int x = 0; x < xmax; x++, p += 3) {
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        *o++ = clip8(s0);
        *o++ = clip8(s1);
        *o++ = clip8(s2);
        continue;
      }
      for (int b = 0; b < ch; b++) {
        int32_t ss = 1 << (kPrecisionBits - 1);
        for (int x = 0; x < xmax; x++) ss += row[(x + xmin) * ch + b] * k[x];
        *o++ = clip8(ss);
      }
    }
  }
}

void vertical(const uint8_t* src, int row_len, int out_h, int offset, const Coeffs& c, uint8_t* out) {
  for (int yy = 0; yy < out_h; yy++) {
    const int ymin = c.bounds[yy * 2] - offset;
    const int ymax = c.bounds[yy * 2 + 1];
    const int32_t* k = &c.kk[static_cast<size_t>(yy) * c.ksize];
    uint8_t* o = out + static_cast<size_t>(yy) * row_len;
    for (int i = 0; i < row_len; i++) {
      int32_t ss = 1 << (kPrecisionBits - 1);
      for (int y = 0; y < ymax; y++) ss += src[static_cast<size_t>(y + ymin) * row_len + i] * k[y];
      o[i] = clip8(ss);
    }
  }
}

// pilResize(src: Uint8Array (HWC), width, height, channels, outWidth, outHeight, filter 0..3) -> Uint8Array
napi_value pil_resize(napi_env env, napi_callback_info info) {
  DPO_TRY
  Args a(env, info);
  void* data;
  size_t length;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, a.argv[0], &type, &length, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array)
    throw ArgError("pilResize: expected a Uint8Array of pixels");
  const int in_w = static_cast<int>(get_int(env, a.argv[1], "width"));
  const int in_h = static_cast<int>(get_int(env, a.argv[2], "height"));
  const int ch = static_cast<int>(get_int(env, a.argv[3], "channels"));
  const int out_w = static_cast<int>(get_int(env, a.argv[4], "outWidth"));
  const int out_h = static_cast<int>(get_int(env, a.argv[5], "outHeight"));
  const int filter = static_cast<int>(get_int(env, a.argv[6], "filter"));
  if (in_w <= 0 || in_h <= 0 || ch <= 0 || out_w <= 0 || out_h <= 0 || filter < 0 || filter > 3)
    throw ArgError("pilResize: invalid sizes or filter");
  if (length != static_cast<size_t>(in_w) * in_h * ch) throw ArgError("pilResize: pixel buffer does not match width x height x channels");
  const auto* src = static_cast<const uint8_t*>(data);
  const Coeffs horiz = coefficients(in_w, 0, in_w, out_w, filter);
  const Coeffs vert = coefficients(in_h, 0, in_h, out_h, filter);
  const int y_first = vert.bounds[0];
  const int y_last = vert.bounds[out_h * 2 - 2] + vert.bounds[out_h * 2 - 1];
  std::vector<uint8_t> tmp;
  const uint8_t* cur = src;
  int cur_w = in_w;
  int offset = 0;
  int cur_h = in_h;
  if (out_w != in_w) {
    tmp.resize(static_cast<size_t>(out_w) * (y_last - y_first) * ch);
    horizontal(src, in_w, ch, y_first, y_last - y_first, out_w, horiz, tmp.data());
    cur = tmp.data();
    cur_w = out_w;
    cur_h = y_last - y_first;
    offset = y_first;
  }
  const int final_h = out_h != in_h ? out_h : cur_h;
  void* out_data;
  napi_value ab, result;
  const size_t out_len = static_cast<size_t>(cur_w) * final_h * ch;
  check(env, napi_create_arraybuffer(env, out_len, &out_data, &ab), "output");
  if (out_h != in_h) {
    vertical(cur, cur_w * ch, out_h, offset, vert, static_cast<uint8_t*>(out_data));
  } else {
    std::memcpy(out_data, cur, out_len);
  }
  check(env, napi_create_typedarray(env, napi_uint8_array, out_len, ab, 0, &result), "output");
  return result;
  DPO_CATCH(env)
}

}  // namespace

void exports_image(std::vector<Export>& out) { out.push_back({"pilResize", pil_resize}); }

}  // namespace dpo

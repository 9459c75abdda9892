// Compiled CPU tile compositing for avatarbench.render (gsplat 1.5.3 maths), forward + backward.
//
// Inputs are flattened over images: means2d (G,2), conics (G,3) = upper triangle (a,b,c) of the
// inverse blurred 2D covariance, colors (G,D), opacities (G,) (times the compensation in
// antialiased mode), backgrounds (I,D) or an empty tensor. The tile lists come from
// avatarbench.render.tiles.bin_gaussians: flat_ids (M,) sorted by slot then depth, slot_tiles (S,)
// global tile ids, slot_offsets (S+1,).
//
// Per pixel (gsplat rasterize_to_pixels_3dgs_fwd_kernel): front to back, sigma = 0.5(a dx^2 + c dy^2)
// + b dx dy with dx = mean - pixel centre; skip sigma < 0 or alpha = min(0.999, o exp(-sigma)) < 1/255;
// stop (exclusive) when T (1 - alpha) <= 1e-4. The backward walks each pixel's list back to front
// recovering T by division, as gsplat's _bwd_kernel does.
//
// Plain C ABI (no torch headers: builds in seconds with any C++17 compiler), loaded with ctypes.
// Speed: tiles are handed out one at a time from an atomic counter to a persistent thread pool
// (longest lists first, since slots are sorted that way; see Pool). Inside a tile the loop is Gaussian-outer, pixel-inner, and for each Gaussian
// only the pixels of the ellipse {sigma <= ln(255 o) + margin} are visited (row range, then a
// per-row column span from the quadratic); every visited pixel is still tested exactly.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace {

constexpr double kAlphaThreshold = 1.0 / 255.0;
constexpr double kAlphaMax = 0.999;
constexpr double kTMin = 1e-4;
constexpr double kSigmaMargin = 0.05;  // widen the visited ellipse; the exact alpha test decides

struct TileGeom {
  int img, x0, y0, tw, th;
};

inline TileGeom tile_geom(int64_t tile, int tiles_x, int tiles_y, int ts, int width, int height) {
  const int64_t n_tiles = (int64_t)tiles_x * tiles_y;
  TileGeom g;
  g.img = (int)(tile / n_tiles);
  const int64_t local = tile % n_tiles;
  const int ty = (int)(local / tiles_x), tx = (int)(local % tiles_x);
  g.x0 = tx * ts;
  g.y0 = ty * ts;
  g.tw = std::min(ts, width - g.x0);
  g.th = std::min(ts, height - g.y0);
  return g;
}

// Rows [r0, r1] of the tile and, per row, columns [c0, c1] that may hold sigma <= thr.
struct Ellipse {
  double mx, my, a, b, c, thr, inva = 0.0;
  bool bounded;
  int r0, r1;
  void init(double mx_, double my_, double a_, double b_, double c_, double o, const TileGeom& g) {
    mx = mx_ - g.x0 - 0.5;  // in tile-local column units: pixel column j has centre j (shifted)
    my = my_ - g.y0 - 0.5;
    a = a_;
    b = b_;
    c = c_;
    r0 = 0;
    r1 = -1;
    bounded = false;
    thr = 0.0;
    if (!(o >= kAlphaThreshold)) return;  // o < 1/255 (or nan): nothing passes
    thr = std::log(o / kAlphaThreshold) + kSigmaMargin;
    const double det = a * c - b * b;
    bounded = det > 0.0 && a > 0.0;
    if (!bounded) {
      r0 = 0;
      r1 = g.th - 1;
      return;
    }
    const double ry = std::sqrt(2.0 * thr * a / det);
    inva = 1.0 / a;
    const double lo = std::max(-1.0, std::ceil(my - ry)), hi = std::min((double)g.th, std::floor(my + ry));
    r0 = (int)std::max(0.0, lo);
    r1 = (int)std::min((double)(g.th - 1), hi);
  }
  // columns for tile row r; returns false when empty
  inline bool span(int r, int tw, int& c0, int& c1) const {
    if (!bounded) {
      c0 = 0;
      c1 = tw - 1;
      return true;
    }
    const double dy = my - r;
    const double disc = b * b * dy * dy - a * (c * dy * dy - 2.0 * thr);
    if (disc < 0.0) return false;
    const double sq = std::sqrt(disc);
    const double dlo = (-b * dy - sq) * inva, dhi = (-b * dy + sq) * inva;  // dx = mean - pixel in [dlo, dhi]
    const double lo = std::max(-1.0, std::ceil(mx - dhi)), hi = std::min((double)tw, std::floor(mx - dlo));
    c0 = (int)std::max(0.0, lo);
    c1 = (int)std::min((double)(tw - 1), hi);
    return c0 <= c1;
  }
};

// A persistent pool of worker threads (created on first use, grown on demand). A call publishes a
// job; the calling thread and up to nthreads - 1 workers claim tiles from an atomic counter; the
// caller then waits only for tiles that were *claimed*, never for a worker that has not woken up
// yet -- so on a machine where other processes hold the cores, a second thread can only help
// (a late worker finds the queue empty). Calls are serialised by a mutex. After fork() the child
// has no workers and the caller simply does every tile itself.
struct Job {
  const std::function<void(int64_t)>* body;
  int64_t n;
  int max_workers;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static destructors
    return *pool;
  }
  void run(int64_t n, int nthreads, const std::function<void(int64_t)>& body) {
    std::lock_guard<std::mutex> call_lock(call_mu_);
    auto job = std::make_shared<Job>();
    job->body = &body;
    job->n = n;
    job->max_workers = std::max(0, nthreads - 1);
    if (job->max_workers > 0) {
      ensure_workers(job->max_workers);
      {
        std::lock_guard<std::mutex> lk(mu_);
        job_ = job;
        ++gen_;
      }
      cv_.notify_all();
    }
    work(*job);
    if (job->done.load() < n) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return job->done.load() >= n; });
    }
    std::lock_guard<std::mutex> lk(mu_);
    job_.reset();
  }

 private:
  void work(Job& job) {
    for (int64_t s = job.next.fetch_add(1); s < job.n; s = job.next.fetch_add(1)) {
      (*job.body)(s);
      if (job.done.fetch_add(1) + 1 == job.n) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }
  void ensure_workers(int k) {
    while ((int)n_workers_ < k) {
      const int id = n_workers_++;
      std::thread([this, id] { loop(id); }).detach();
    }
  }
  void loop(int id) {
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return gen_ != seen; });
        seen = gen_;
        job = job_;
      }
      if (job && id < job->max_workers) work(*job);
    }
  }
  std::mutex call_mu_, mu_;
  std::condition_variable cv_, done_cv_;
  std::shared_ptr<Job> job_;
  uint64_t gen_ = 0;
  std::atomic<int> n_workers_{0};
};

// Runs body(slot) for every slot on up to nthreads threads (the caller is one), longest first.
template <typename F>
void for_each_slot(int64_t n_slots, int nthreads, const F& body) {
  if (n_slots <= 0) return;
  const int nt = (int)std::max<int64_t>(1, std::min<int64_t>(nthreads, n_slots));
  const std::function<void(int64_t)> fn = [&](int64_t s) { body(s); };
  Pool::get().run(n_slots, nt, fn);
}

template <typename T, int DC>
void forward_impl(const T* m2d, const T* con, const T* col, const T* op, const T* bg, const int64_t* ids,
                  const int64_t* slot_tiles, const int64_t* slot_off, int64_t n_slots, int n_images, int Dr,
                  int width, int height, int ts, int tiles_x, int tiles_y, int nthreads, T* out, T* tfin,
                  int32_t* last) {
  const int D = DC > 0 ? DC : Dr;
  const int64_t HW = (int64_t)height * width;
  // untouched pixels: T = 1, colour = background
  for (int64_t i = 0; i < (int64_t)n_images * HW; ++i) {
    const int64_t img = i / HW;
    tfin[i] = T(1);
    last[i] = -1;
    for (int ch = 0; ch < D; ++ch) out[i * D + ch] = bg ? bg[img * D + ch] : T(0);
  }
  const int P = ts * ts;
  for_each_slot(n_slots, nthreads, [&](int64_t s) {
    thread_local std::vector<T> acc_v, tp_v;
    thread_local std::vector<int32_t> last_v;
    thread_local std::vector<char> done_v;
    thread_local std::vector<int> alive_v;
    acc_v.assign((size_t)P * D, T(0));
    tp_v.assign(P, T(1));
    last_v.assign(P, -1);
    done_v.assign(P, 0);
    alive_v.assign(ts, 0);
    T* acc = acc_v.data();
    T* Tp = tp_v.data();
    int32_t* lst = last_v.data();
    char* done = done_v.data();
    int* alive = alive_v.data();
    const TileGeom g = tile_geom(slot_tiles[s], tiles_x, tiles_y, ts, width, height);
    for (int r = 0; r < g.th; ++r) alive[r] = g.tw;
    int n_alive = g.tw * g.th;
    const int64_t o0 = slot_off[s], cnt = slot_off[s + 1] - o0;
    Ellipse el;
    for (int64_t k = 0; k < cnt && n_alive > 0; ++k) {
      const int64_t gi = ids[o0 + k];
      const T o = op[gi];
      const T a = con[3 * gi], bb = con[3 * gi + 1], c = con[3 * gi + 2];
      const T mx = m2d[2 * gi], my = m2d[2 * gi + 1];
      el.init(mx, my, a, bb, c, o, g);
      const T* cg = col + gi * D;
      for (int r = el.r0; r <= el.r1; ++r) {
        if (alive[r] == 0) continue;
        int c0, c1;
        if (!el.span(r, g.tw, c0, c1)) continue;
        const T dy = my - (T)(g.y0 + r) - T(0.5);
        for (int cc = c0; cc <= c1; ++cc) {
          const int p = r * ts + cc;
          if (done[p]) continue;
          const T dx = mx - (T)(g.x0 + cc) - T(0.5);
          const T sigma = T(0.5) * (a * dx * dx + c * dy * dy) + bb * dx * dy;
          if (sigma < T(0)) continue;
          const T alpha = std::min((T)kAlphaMax, o * std::exp(-sigma));
          if (alpha < (T)kAlphaThreshold) continue;
          const T nt = Tp[p] * (T(1) - alpha);
          if (nt <= (T)kTMin) {
            done[p] = 1;
            --alive[r];
            --n_alive;
            continue;
          }
          const T w = alpha * Tp[p];
          T* ap = acc + (int64_t)p * D;
          for (int ch = 0; ch < D; ++ch) ap[ch] += cg[ch] * w;
          Tp[p] = nt;
          lst[p] = (int32_t)k;
        }
      }
    }
    for (int r = 0; r < g.th; ++r) {
      for (int cc = 0; cc < g.tw; ++cc) {
        const int p = r * ts + cc;
        const int64_t pix = (int64_t)g.img * HW + (int64_t)(g.y0 + r) * width + (g.x0 + cc);
        tfin[pix] = Tp[p];
        last[pix] = lst[p];
        for (int ch = 0; ch < D; ++ch)
          out[pix * D + ch] = acc[(int64_t)p * D + ch] + (bg ? Tp[p] * bg[(int64_t)g.img * D + ch] : T(0));
      }
    }
  });
}

// Per-intersection gradient record: mx, my, a, b, c, opacity, |mx|, |my|, colour[D].
template <typename T, int DC>
void backward_impl(const T* m2d, const T* con, const T* col, const T* op, const T* bg, const int64_t* ids,
                   const int64_t* slot_tiles, const int64_t* slot_off, int64_t n_slots, int Dr, int width,
                   int height, int ts, int tiles_x, int tiles_y, const T* tfin, const int32_t* last,
                   const T* v_out, const T* v_alpha, bool absgrad, int nthreads, T* rec) {
  const int D = DC > 0 ? DC : Dr;
  const int R = 8 + D;
  const int64_t HW = (int64_t)height * width;
  const int P = ts * ts;
  for_each_slot(n_slots, nthreads, [&](int64_t s) {
    thread_local std::vector<T> tp_v, bufv_v, rhs_v, vo_v;
    thread_local std::vector<int32_t> last_v;
    thread_local std::vector<T> vcol_dyn;
    vcol_dyn.assign(D, T(0));
    tp_v.assign(P, T(0));
    bufv_v.assign(P, T(0));
    rhs_v.assign(P, T(0));
    vo_v.assign((size_t)P * D, T(0));
    last_v.assign(P, -1);
    T* Tp = tp_v.data();
    T* bufv = bufv_v.data();
    T* rhs = rhs_v.data();
    T* vo = vo_v.data();
    int32_t* lst = last_v.data();
    const TileGeom g = tile_geom(slot_tiles[s], tiles_x, tiles_y, ts, width, height);
    int kmax = -1;
    for (int r = 0; r < g.th; ++r) {
      for (int cc = 0; cc < g.tw; ++cc) {
        const int p = r * ts + cc;
        const int64_t pix = (int64_t)g.img * HW + (int64_t)(g.y0 + r) * width + (g.x0 + cc);
        Tp[p] = tfin[pix];
        lst[p] = last[pix];
        kmax = std::max(kmax, (int)lst[p]);
        T bgv = T(0);
        for (int ch = 0; ch < D; ++ch) {
          const T v = v_out[pix * D + ch];
          vo[(int64_t)p * D + ch] = v;
          if (bg) bgv += bg[(int64_t)g.img * D + ch] * v;
        }
        rhs[p] = Tp[p] * (bgv - (v_alpha ? v_alpha[pix] : T(0)));
      }
    }
    const int64_t o0 = slot_off[s];
    Ellipse el;
    for (int k = kmax; k >= 0; --k) {
      const int64_t gi = ids[o0 + k];
      const T o = op[gi];
      const T a = con[3 * gi], bb = con[3 * gi + 1], c = con[3 * gi + 2];
      const T mx = m2d[2 * gi], my = m2d[2 * gi + 1];
      el.init(mx, my, a, bb, c, o, g);
      const T* cg = col + gi * D;
      T vmx = 0, vmy = 0, va = 0, vb = 0, vc = 0, vop = 0, amx = 0, amy = 0;
      T vcol[DC > 0 ? DC : 1];
      T* vcol_p = DC > 0 ? vcol : vcol_dyn.data();
      for (int ch = 0; ch < D; ++ch) vcol_p[ch] = T(0);
      bool touched = false;
      for (int r = el.r0; r <= el.r1; ++r) {
        int c0, c1;
        if (!el.span(r, g.tw, c0, c1)) continue;
        const T dy = my - (T)(g.y0 + r) - T(0.5);
        for (int cc = c0; cc <= c1; ++cc) {
          const int p = r * ts + cc;
          if (k > lst[p]) continue;
          const T dx = mx - (T)(g.x0 + cc) - T(0.5);
          const T sigma = T(0.5) * (a * dx * dx + c * dy * dy) + bb * dx * dy;
          if (sigma < T(0)) continue;
          const T vis = std::exp(-sigma);
          const T raw = o * vis;
          const T alpha = std::min((T)kAlphaMax, raw);
          if (alpha < (T)kAlphaThreshold) continue;
          touched = true;
          const T ra = T(1) / (T(1) - alpha);
          const T Tk = Tp[p] * ra;  // transmittance in front of k
          const T w = alpha * Tk;
          const T* vp = vo + (int64_t)p * D;
          T cv = T(0);
          for (int ch = 0; ch < D; ++ch) {
            cv += cg[ch] * vp[ch];
            vcol_p[ch] += w * vp[ch];
          }
          const T v_al = Tk * cv - (bufv[p] + rhs[p]) * ra;
          bufv[p] += w * cv;
          Tp[p] = Tk;
          if (raw <= (T)kAlphaMax) {
            const T vs = -raw * v_al;  // dL/dsigma
            va += T(0.5) * dx * dx * vs;
            vb += dx * dy * vs;
            vc += T(0.5) * dy * dy * vs;
            const T gx = vs * (a * dx + bb * dy), gy = vs * (bb * dx + c * dy);
            vmx += gx;
            vmy += gy;
            if (absgrad) {
              amx += std::abs(gx);
              amy += std::abs(gy);
            }
            vop += vis * v_al;
          }
        }
      }
      if (touched) {
        T* rr = rec + (o0 + k) * R;
        rr[0] = vmx;
        rr[1] = vmy;
        rr[2] = va;
        rr[3] = vb;
        rr[4] = vc;
        rr[5] = vop;
        rr[6] = amx;
        rr[7] = amy;
        for (int ch = 0; ch < D; ++ch) rr[8 + ch] = vcol_p[ch];
      }
    }
  });
}

#define DISPATCH_CHANNELS(D, ...)             \
  switch (D) {                                \
    case 1: {                                 \
      constexpr int DC = 1;                   \
      __VA_ARGS__();                          \
      break;                                  \
    }                                         \
    case 3: {                                 \
      constexpr int DC = 3;                   \
      __VA_ARGS__();                          \
      break;                                  \
    }                                         \
    case 4: {                                 \
      constexpr int DC = 4;                   \
      __VA_ARGS__();                          \
      break;                                  \
    }                                         \
    default: {                                \
      constexpr int DC = 0;                   \
      __VA_ARGS__();                          \
    }                                         \
  }

template <typename T>
void forward_any(const T* m2d, const T* con, const T* col, const T* op, const T* bg, const int64_t* ids,
                 const int64_t* slot_tiles, const int64_t* slot_off, int64_t n_slots, int n_images, int D, int width,
                 int height, int ts, int tiles_x, int tiles_y, int nthreads, T* out, T* tfin, int32_t* last) {
  DISPATCH_CHANNELS(D, [&] {
    forward_impl<T, DC>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, n_images, D, width, height, ts,
                        tiles_x, tiles_y, nthreads, out, tfin, last);
  });
}

// rec: (M, 8 + D) zeroed scratch; acc: (G, 8 + D) zeroed output (mx, my, a, b, c, opacity, |mx|, |my|, colour).
template <typename T>
void backward_any(const T* m2d, const T* con, const T* col, const T* op, const T* bg, const int64_t* ids,
                  const int64_t* slot_tiles, const int64_t* slot_off, int64_t n_slots, int64_t M, int D, int width,
                  int height, int ts, int tiles_x, int tiles_y, const T* tfin, const int32_t* last, const T* v_out,
                  const T* v_alpha, int absgrad, int nthreads, T* rec, T* acc) {
  DISPATCH_CHANNELS(D, [&] {
    backward_impl<T, DC>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, D, width, height, ts, tiles_x,
                         tiles_y, tfin, last, v_out, v_alpha, absgrad != 0, nthreads, rec);
  });
  // deterministic reduction of the per-intersection records onto Gaussians (serial, M x R adds)
  const int R = 8 + D;
  for (int64_t m = 0; m < M; ++m) {
    T* dst = acc + ids[m] * R;
    const T* src = rec + m * R;
    for (int j = 0; j < R; ++j) dst[j] += src[j];
  }
}

// Work counts of gsplat's per-pixel loop (for the benchmark's arithmetic floor): per pixel, the
// list entries the forward evaluates (up to and including the one that would saturate T) and the
// entries the backward evaluates (up to the last contributor). Single-threaded, float32 inputs.
void count_evals(const float* m2d, const float* con, const float* op, const int64_t* ids, const int64_t* slot_tiles,
                 const int64_t* slot_off, int64_t n_slots, int width, int height, int ts, int tiles_x, int tiles_y,
                 int64_t* counts) {
  for (int64_t s = 0; s < n_slots; ++s) {
    const TileGeom g = tile_geom(slot_tiles[s], tiles_x, tiles_y, ts, width, height);
    const int64_t o0 = slot_off[s], cnt = slot_off[s + 1] - o0;
    for (int r = 0; r < g.th; ++r) {
      for (int cc = 0; cc < g.tw; ++cc) {
        const float px = g.x0 + cc + 0.5f, py = g.y0 + r + 0.5f;
        float T = 1.0f;
        int64_t k = 0, last = -1;
        for (; k < cnt; ++k) {
          const int64_t gi = ids[o0 + k];
          const float dx = m2d[2 * gi] - px, dy = m2d[2 * gi + 1] - py;
          const float sigma = 0.5f * (con[3 * gi] * dx * dx + con[3 * gi + 2] * dy * dy) + con[3 * gi + 1] * dx * dy;
          const float alpha = std::min(0.999f, op[gi] * std::exp(-sigma));
          if (sigma < 0.0f || alpha < (float)kAlphaThreshold) continue;
          const float nt = T * (1.0f - alpha);
          if (nt <= (float)kTMin) {
            ++k;
            break;
          }
          T = nt;
          last = k;
        }
        counts[0] += k;
        counts[1] += last + 1;
      }
    }
  }
}

// Tile binning (the counterpart of avatarbench.render.tiles.bin_gaussians' torch code, same float
// maths for the tile ranges). Pass 1 counts intersections per global tile; pass 2 walks the
// visible Gaussians in depth order and appends each to the lists of the tiles it touches, so
// every list comes out depth-sorted (ties by index: the order array is a stable sort).
template <typename T>
inline bool tile_range(const T* m2d, const int32_t* radii, int64_t g, int ts, int tiles_x, int tiles_y, int& x0,
                       int& x1, int& y0, int& y1) {
  const int32_t rx = radii[2 * g], ry = radii[2 * g + 1];
  if (!(rx > 0 && ry > 0)) return false;
  const T mx = m2d[2 * g], my = m2d[2 * g + 1], fts = (T)ts;
  auto clampi = [](T v, int hi) { return (int)std::min<T>((T)hi, std::max<T>(T(0), v)); };
  x0 = clampi(std::floor((mx - (T)rx) / fts), tiles_x);
  x1 = clampi(std::ceil((mx + (T)rx) / fts), tiles_x);
  y0 = clampi(std::floor((my - (T)ry) / fts), tiles_y);
  y1 = clampi(std::ceil((my + (T)ry) / fts), tiles_y);
  return true;
}

template <typename T>
void bin_count(const T* m2d, const int32_t* radii, int64_t G, int64_t N, int ts, int tiles_x, int tiles_y,
               int64_t* tile_counts) {
  const int64_t n_tiles = (int64_t)tiles_x * tiles_y;
  for (int64_t g = 0; g < G; ++g) {
    int x0, x1, y0, y1;
    if (!tile_range(m2d, radii, g, ts, tiles_x, tiles_y, x0, x1, y0, y1)) continue;
    const int64_t base = (g / N) * n_tiles;
    for (int ty = y0; ty < y1; ++ty)
      for (int tx = x0; tx < x1; ++tx) ++tile_counts[base + (int64_t)ty * tiles_x + tx];
  }
}

template <typename T>
void bin_fill(const T* m2d, const int32_t* radii, const int64_t* order, int64_t n_order, int64_t N, int ts,
              int tiles_x, int tiles_y, const int64_t* slot_of_tile, const int64_t* slot_off, int64_t n_slots,
              int64_t* flat_ids, int64_t* pos_in_slot, int64_t* slot_of) {
  const int64_t n_tiles = (int64_t)tiles_x * tiles_y;
  std::vector<int64_t> cursor(slot_off, slot_off + n_slots);
  for (int64_t i = 0; i < n_order; ++i) {
    const int64_t g = order[i];
    int x0, x1, y0, y1;
    if (!tile_range(m2d, radii, g, ts, tiles_x, tiles_y, x0, x1, y0, y1)) continue;
    const int64_t base = (g / N) * n_tiles;
    for (int ty = y0; ty < y1; ++ty) {
      for (int tx = x0; tx < x1; ++tx) {
        const int64_t s = slot_of_tile[base + (int64_t)ty * tiles_x + tx];
        const int64_t m = cursor[s]++;
        flat_ids[m] = g;
        pos_in_slot[m] = m - slot_off[s];
        slot_of[m] = s;
      }
    }
  }
}

}  // namespace

#define FWD_ARGS(T)                                                                                                \
  const T *m2d, const T *con, const T *col, const T *op, const T *bg, const int64_t *ids, const int64_t *slot_tiles, \
      const int64_t *slot_off, int64_t n_slots, int n_images, int D, int width, int height, int ts, int tiles_x,    \
      int tiles_y, int nthreads, T *out, T *tfin, int32_t *last
#define BWD_ARGS(T)                                                                                                \
  const T *m2d, const T *con, const T *col, const T *op, const T *bg, const int64_t *ids, const int64_t *slot_tiles, \
      const int64_t *slot_off, int64_t n_slots, int64_t M, int D, int width, int height, int ts, int tiles_x,       \
      int tiles_y, const T *tfin, const int32_t *last, const T *v_out, const T *v_alpha, int absgrad, int nthreads, \
      T *rec, T *acc

extern "C" {
int rc_abi_version() { return 1; }
void rc_bin_count_f32(const float* m2d, const int32_t* radii, int64_t G, int64_t N, int ts, int tiles_x, int tiles_y,
                      int64_t* tile_counts) {
  bin_count<float>(m2d, radii, G, N, ts, tiles_x, tiles_y, tile_counts);
}
void rc_bin_count_f64(const double* m2d, const int32_t* radii, int64_t G, int64_t N, int ts, int tiles_x,
                      int tiles_y, int64_t* tile_counts) {
  bin_count<double>(m2d, radii, G, N, ts, tiles_x, tiles_y, tile_counts);
}
void rc_bin_fill_f32(const float* m2d, const int32_t* radii, const int64_t* order, int64_t n_order, int64_t N, int ts,
                     int tiles_x, int tiles_y, const int64_t* slot_of_tile, const int64_t* slot_off, int64_t n_slots,
                     int64_t* flat_ids, int64_t* pos_in_slot, int64_t* slot_of) {
  bin_fill<float>(m2d, radii, order, n_order, N, ts, tiles_x, tiles_y, slot_of_tile, slot_off, n_slots, flat_ids,
                  pos_in_slot, slot_of);
}
void rc_bin_fill_f64(const double* m2d, const int32_t* radii, const int64_t* order, int64_t n_order, int64_t N,
                     int ts, int tiles_x, int tiles_y, const int64_t* slot_of_tile, const int64_t* slot_off,
                     int64_t n_slots, int64_t* flat_ids, int64_t* pos_in_slot, int64_t* slot_of) {
  bin_fill<double>(m2d, radii, order, n_order, N, ts, tiles_x, tiles_y, slot_of_tile, slot_off, n_slots, flat_ids,
                   pos_in_slot, slot_of);
}
void rc_count_evals(const float* m2d, const float* con, const float* op, const int64_t* ids,
                    const int64_t* slot_tiles, const int64_t* slot_off, int64_t n_slots, int width, int height, int ts,
                    int tiles_x, int tiles_y, int64_t* counts) {
  count_evals(m2d, con, op, ids, slot_tiles, slot_off, n_slots, width, height, ts, tiles_x, tiles_y, counts);
}
void rc_forward_f32(FWD_ARGS(float)) {
  forward_any<float>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, n_images, D, width, height, ts,
                     tiles_x, tiles_y, nthreads, out, tfin, last);
}
void rc_forward_f64(FWD_ARGS(double)) {
  forward_any<double>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, n_images, D, width, height, ts,
                      tiles_x, tiles_y, nthreads, out, tfin, last);
}
void rc_backward_f32(BWD_ARGS(float)) {
  backward_any<float>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, M, D, width, height, ts, tiles_x,
                      tiles_y, tfin, last, v_out, v_alpha, absgrad, nthreads, rec, acc);
}
void rc_backward_f64(BWD_ARGS(double)) {
  backward_any<double>(m2d, con, col, op, bg, ids, slot_tiles, slot_off, n_slots, M, D, width, height, ts, tiles_x,
                       tiles_y, tfin, last, v_out, v_alpha, absgrad, nthreads, rec, acc);
}
}

//! PNG pictures of flows and benchmarks: density heat maps beside sample scatters (2-D data),
//! grids of image samples, interpolation strips, and log-log timing plots.
//!
//! Everything is drawn into a small RGB [`Canvas`] and written with the `png` crate, atomically
//! (a temporary file renamed over the target), so a picture is never half written.

use std::path::Path;

use exactflow_layers::Tensor;
use exactflow_models::atomic_write::write_atomic;
use exactflow_models::{Error, Flow, Result};

/// An RGB raster, row-major, 3 bytes per pixel.
#[derive(Clone, Debug)]
pub struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

/// An RGB colour.
pub type Rgb = [u8; 3];

/// White.
pub const WHITE: Rgb = [255, 255, 255];
/// Light grey for grid lines.
pub const GRID: Rgb = [225, 225, 225];
/// Dark grey for axes and data points.
pub const DARK: Rgb = [60, 60, 60];

impl Canvas {
    /// A canvas of the given size filled with `background`.
    pub fn new(width: usize, height: usize, background: Rgb) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&background);
        }
        Canvas { width, height, rgb }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The colour at (x, y), if inside.
    pub fn get(&self, x: usize, y: usize) -> Option<Rgb> {
        (x < self.width && y < self.height).then(|| {
            let k = 3 * (y * self.width + x);
            [self.rgb[k], self.rgb[k + 1], self.rgb[k + 2]]
        })
    }

    /// Sets the pixel at (x, y); outside the canvas does nothing.
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let k = 3 * (y as usize * self.width + x as usize);
            self.rgb[k..k + 3].copy_from_slice(&c);
        }
    }

    /// A filled disc of radius `r` centred at (x, y).
    pub fn disc(&mut self, x: f64, y: f64, r: f64, c: Rgb) {
        let (x0, x1) = ((x - r).floor() as i64, (x + r).ceil() as i64);
        let (y0, y1) = ((y - r).floor() as i64, (y + r).ceil() as i64);
        for py in y0..=y1 {
            for px in x0..=x1 {
                let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
                if dx * dx + dy * dy <= r * r {
                    self.set(px, py, c);
                }
            }
        }
    }

    /// A line from (x0, y0) to (x1, y1), `width` pixels wide.
    pub fn line(&mut self, (x0, y0): (f64, f64), (x1, y1): (f64, f64), width: f64, c: Rgb) {
        let len = ((x1 - x0).powi(2) + (y1 - y0).powi(2)).sqrt();
        let steps = (len * 2.0).ceil().max(1.0) as usize;
        for k in 0..=steps {
            let t = k as f64 / steps as f64;
            self.disc(x0 + t * (x1 - x0), y0 + t * (y1 - y0), width / 2.0, c);
        }
    }

    /// Copies `other` onto this canvas with its top-left corner at (x, y).
    pub fn blit(&mut self, other: &Canvas, x: usize, y: usize) {
        for oy in 0..other.height {
            for ox in 0..other.width {
                let k = 3 * (oy * other.width + ox);
                self.set(
                    (x + ox) as i64,
                    (y + oy) as i64,
                    [other.rgb[k], other.rgb[k + 1], other.rgb[k + 2]],
                );
            }
        }
    }

    /// The PNG encoding of the canvas.
    ///
    /// # Errors
    /// [`Error::Format`] if the encoder fails (it does not for valid sizes).
    pub fn to_png(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let err = |e: png::EncodingError| Error::Format {
            path: String::new(),
            format: "png",
            reason: e.to_string(),
        };
        {
            let mut enc = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header().map_err(err)?;
            w.write_image_data(&self.rgb).map_err(err)?;
        }
        Ok(out)
    }

    /// Writes the canvas as a PNG file, atomically.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_png()?)
    }
}

/// A 3x5 pixel font: digits, upper-case letters (lower case is drawn as upper case) and a few
/// signs, each glyph 5 rows of 3 bits (most significant bit on the left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_uppercase() {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        'A' => [2, 5, 7, 5, 5],
        'B' => [6, 5, 6, 5, 6],
        'C' => [3, 4, 4, 4, 3],
        'D' => [6, 5, 5, 5, 6],
        'E' => [7, 4, 6, 4, 7],
        'F' => [7, 4, 6, 4, 4],
        'G' => [3, 4, 5, 5, 3],
        'H' => [5, 5, 7, 5, 5],
        'I' => [7, 2, 2, 2, 7],
        'J' => [1, 1, 1, 5, 2],
        'K' => [5, 5, 6, 5, 5],
        'L' => [4, 4, 4, 4, 7],
        'M' => [5, 7, 7, 5, 5],
        'N' => [6, 5, 5, 5, 5],
        'O' => [2, 5, 5, 5, 2],
        'P' => [6, 5, 6, 4, 4],
        'Q' => [2, 5, 5, 6, 3],
        'R' => [6, 5, 6, 5, 5],
        'S' => [3, 4, 2, 1, 6],
        'T' => [7, 2, 2, 2, 2],
        'U' => [5, 5, 5, 5, 7],
        'V' => [5, 5, 5, 5, 2],
        'W' => [5, 5, 7, 7, 5],
        'X' => [5, 5, 2, 5, 5],
        'Y' => [5, 5, 2, 2, 2],
        'Z' => [7, 1, 2, 4, 7],
        '-' => [0, 0, 7, 0, 0],
        '.' => [0, 0, 0, 0, 2],
        '/' => [1, 1, 2, 4, 4],
        '(' => [2, 4, 4, 4, 2],
        ')' => [2, 1, 1, 1, 2],
        '=' => [0, 7, 0, 7, 0],
        '^' => [2, 5, 0, 0, 0],
        ',' => [0, 0, 0, 2, 4],
        ':' => [0, 2, 0, 2, 0],
        ' ' => [0; 5],
        _ => return None,
    })
}

impl Canvas {
    /// Draws `text` with its top-left corner at (x, y) in the built-in 3x5 font, each font pixel
    /// a `scale` x `scale` block; characters the font lacks are drawn as blanks. Returns the
    /// width drawn, in pixels.
    pub fn text(&mut self, x: i64, y: i64, text: &str, scale: usize, c: Rgb) -> usize {
        let s = scale.max(1) as i64;
        let mut cx = x;
        for ch in text.chars() {
            if let Some(rows) = glyph(ch) {
                for (r, bits) in rows.iter().enumerate() {
                    for col in 0..3 {
                        if bits >> (2 - col) & 1 == 1 {
                            for dy in 0..s {
                                for dx in 0..s {
                                    self.set(cx + col * s + dx, y + r as i64 * s + dy, c);
                                }
                            }
                        }
                    }
                }
            }
            cx += 4 * s;
        }
        (cx - x) as usize
    }

    /// The width `text` takes at `scale`.
    pub fn text_width(text: &str, scale: usize) -> usize {
        text.chars().count() * 4 * scale.max(1)
    }
}

/// A perceptually ordered colour map (dark blue, through teal and green, to yellow), `t` in [0, 1].
pub fn colormap(t: f64) -> Rgb {
    // Anchor colours of matplotlib's viridis at t = 0, 0.25, 0.5, 0.75, 1.
    const ANCHORS: [[f64; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) } * 4.0;
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let mut c = [0u8; 3];
    for (k, v) in c.iter_mut().enumerate() {
        *v = (ANCHORS[i][k] * (1.0 - f) + ANCHORS[i + 1][k] * f).round() as u8;
    }
    c
}

/// A rectangle of the plane: x in [x0, x1], y in [y0, y1].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    /// Left.
    pub x0: f64,
    /// Right.
    pub x1: f64,
    /// Bottom.
    pub y0: f64,
    /// Top.
    pub y1: f64,
}

impl Bounds {
    /// The bounding box of the finite points of an `[N, 2]` tensor, widened by `margin` of its
    /// size on every side (a unit box around the origin when there are none).
    pub fn of_points(points: &Tensor<f64>, margin: f64) -> Bounds {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
        for p in points.as_slice().chunks_exact(2) {
            if p[0].is_finite() && p[1].is_finite() {
                x0 = x0.min(p[0]);
                x1 = x1.max(p[0]);
                y0 = y0.min(p[1]);
                y1 = y1.max(p[1]);
            }
        }
        if !x0.is_finite() {
            return Bounds {
                x0: -1.0,
                x1: 1.0,
                y0: -1.0,
                y1: 1.0,
            };
        }
        let (mx, my) = (((x1 - x0) * margin).max(1e-3), ((y1 - y0) * margin).max(1e-3));
        Bounds {
            x0: x0 - mx,
            x1: x1 + mx,
            y0: y0 - my,
            y1: y1 + my,
        }
    }

    fn to_pixel(self, x: f64, y: f64, size: usize) -> (f64, f64) {
        let s = size as f64;
        (
            (x - self.x0) / (self.x1 - self.x0) * s,
            (self.y1 - y) / (self.y1 - self.y0) * s,
        )
    }
}

/// A heat map of the model density `p(x)` of a 2-D flow over `bounds`, `size` x `size` pixels
/// (colour proportional to the density, normalized to its maximum on the grid).
///
/// # Errors
/// A flow whose data are not 2-D.
pub fn density_map(flow: &Flow<f64>, bounds: Bounds, size: usize) -> Result<Canvas> {
    if flow.data_shape() != [2] {
        return Err(Error::invalid(
            "density_map",
            "flow",
            format!("a density map needs 2-D data, the flow models {:?}", flow.data_shape()),
        ));
    }
    let mut canvas = Canvas::new(size, size, WHITE);
    let mut density = vec![0.0; size * size];
    for row in 0..size {
        let y = bounds.y1 - (row as f64 + 0.5) / size as f64 * (bounds.y1 - bounds.y0);
        let grid = Tensor::from_fn(&[size, 2], |k| {
            if k % 2 == 0 {
                bounds.x0 + ((k / 2) as f64 + 0.5) / size as f64 * (bounds.x1 - bounds.x0)
            } else {
                y
            }
        })?;
        // A point where the flow is not finite has no density to show.
        let lp = flow
            .log_prob(&grid, None)
            .unwrap_or_else(|_| vec![f64::NEG_INFINITY; size]);
        for (col, l) in lp.iter().enumerate() {
            density[row * size + col] = if l.is_finite() { l.exp() } else { 0.0 };
        }
    }
    let max = density.iter().cloned().fold(0.0, f64::max);
    for row in 0..size {
        for col in 0..size {
            let t = if max > 0.0 {
                density[row * size + col] / max
            } else {
                0.0
            };
            canvas.set(col as i64, row as i64, colormap(t));
        }
    }
    Ok(canvas)
}

/// A scatter plot of `[N, 2]` points over `bounds`, `size` x `size` pixels.
pub fn scatter(points: &Tensor<f64>, bounds: Bounds, size: usize, color: Rgb) -> Canvas {
    let mut canvas = Canvas::new(size, size, WHITE);
    for p in points.as_slice().chunks_exact(2) {
        if p[0].is_finite() && p[1].is_finite() {
            let (x, y) = bounds.to_pixel(p[0], p[1], size);
            canvas.disc(x, y, 1.2, color);
        }
    }
    canvas
}

/// Draws the polyline through `points` (plane coordinates, over `bounds`) on a `size` x `size`
/// canvas such as [`scatter`]'s, 1.5 pixels wide.
pub fn polyline(canvas: &mut Canvas, points: &[[f64; 2]], bounds: Bounds, color: Rgb) {
    let size = canvas.width();
    for w in points.windows(2) {
        let a = bounds.to_pixel(w[0][0], w[0][1], size);
        let b = bounds.to_pixel(w[1][0], w[1][1], size);
        canvas.line(a, b, 1.5, color);
    }
}

/// The 2-D summary picture: the learned density (left) beside a scatter of model samples (right,
/// blue) over the data (grey), on the same axes.
///
/// # Errors
/// As [`density_map`]; [`Error::Io`] when the file cannot be written.
pub fn save_density_and_samples(
    path: &Path,
    flow: &Flow<f64>,
    data: &Tensor<f64>,
    samples: &Tensor<f64>,
) -> Result<()> {
    let size = 320;
    let bounds = Bounds::of_points(data, 0.15);
    let left = density_map(flow, bounds, size)?;
    let mut right = scatter(data, bounds, size, GRID);
    for p in samples.as_slice().chunks_exact(2) {
        if p[0].is_finite() && p[1].is_finite() {
            let (x, y) = bounds.to_pixel(p[0], p[1], size);
            right.disc(x, y, 1.2, [31, 119, 180]);
        }
    }
    let gap = 8;
    let mut out = Canvas::new(2 * size + gap, size, WHITE);
    out.blit(&left, 0, 0);
    out.blit(&right, size + gap, 0);
    out.save(path)
}

/// The most pixels an image grid may have (2^27, 384 MiB of RGB): larger pictures are refused
/// before their canvas is allocated.
pub const MAX_GRID_PIXELS: usize = 1 << 27;

/// The pixels of the [`image_grid`] of `n` images of `h x w` pixels, `cols` per row, at `scale`
/// (`None` when it overflows).
pub fn grid_pixels(n: usize, h: usize, w: usize, cols: usize, scale: usize) -> Option<usize> {
    let cols = cols.max(1);
    let rows = n.div_ceil(cols).max(1);
    let width = cols
        .min(n.max(1))
        .checked_mul(w.checked_add(1)?.checked_mul(scale)?)?
        .checked_add(scale)?;
    let height = rows
        .checked_mul(h.checked_add(1)?.checked_mul(scale)?)?
        .checked_add(scale)?;
    width.checked_mul(height)
}

/// The image shape to draw samples of sample shape `shape` as: `[C, H, W]` itself (C = 1 or 3),
/// or `[1, s, s]` for a vector of a square length `s * s` with `s >= 4` (the digits as
/// 64-vectors); `None` for anything else.
pub fn image_shape_of(shape: &[usize]) -> Option<Vec<usize>> {
    match *shape {
        [c, h, w] if c == 1 || c == 3 => Some(vec![c, h, w]),
        [d] => {
            let s = (d as f64).sqrt().round() as usize;
            (s * s == d && s >= 4).then(|| vec![1, s, s])
        }
        _ => None,
    }
}

/// A grid of images `[N, C, H, W]` (C = 1 grey or 3 RGB, values in [0, 1], clamped), `cols` per
/// row, each pixel drawn as a `scale` x `scale` block, with a 1-block white gap.
///
/// # Errors
/// A tensor that is not `[N, 1 | 3, H, W]`; `cols == 0` or `scale == 0`; a grid of more than
/// [`MAX_GRID_PIXELS`] pixels.
pub fn image_grid(images: &Tensor<f64>, cols: usize, scale: usize) -> Result<Canvas> {
    let (n, c, h, w) = match *images.shape() {
        [n, c, h, w] if c == 1 || c == 3 => (n, c, h, w),
        _ => {
            return Err(Error::invalid(
                "image_grid",
                "images",
                format!("expected [N, 1 or 3, H, W], found {:?}", images.shape()),
            ));
        }
    };
    if cols == 0 || scale == 0 {
        return Err(Error::invalid(
            "image_grid",
            "layout",
            "cols and scale must be positive",
        ));
    }
    if grid_pixels(n, h, w, cols, scale).is_none_or(|p| p > MAX_GRID_PIXELS) {
        return Err(Error::invalid(
            "image_grid",
            "size",
            format!(
                "a grid of {n} images of {h}x{w} pixels at scale {scale} would have more than {MAX_GRID_PIXELS} pixels"
            ),
        ));
    }
    let rows = n.div_ceil(cols).max(1);
    let (cw, ch) = ((w + 1) * scale, (h + 1) * scale);
    let mut canvas = Canvas::new(cols.min(n.max(1)) * cw + scale, rows * ch + scale, WHITE);
    for (k, img) in images.samples().enumerate() {
        let (ox, oy) = (scale + (k % cols) * cw, scale + (k / cols) * ch);
        for y in 0..h {
            for x in 0..w {
                let px = |ch: usize| (img[ch * h * w + y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8;
                let col = if c == 1 { [px(0); 3] } else { [px(0), px(1), px(2)] };
                for dy in 0..scale {
                    for dx in 0..scale {
                        canvas.set((ox + x * scale + dx) as i64, (oy + y * scale + dy) as i64, col);
                    }
                }
            }
        }
    }
    Ok(canvas)
}

/// One series of a log-log plot.
#[derive(Clone, Debug)]
pub struct Series {
    /// The name shown in the legend.
    pub label: String,
    /// Line colour.
    pub color: Rgb,
    /// Points (x, y), both positive.
    pub points: Vec<(f64, f64)>,
}

/// A decade label: `10^k` as a plain number for 0 <= k <= 4, `1E{k}` otherwise.
fn decade_label(k: i64) -> String {
    if (0..=4).contains(&k) {
        format!("{}", 10i64.pow(k as u32))
    } else {
        format!("1E{k}")
    }
}

/// A log-log plot of several series: grid lines and labels at every power of ten, axis titles and
/// a legend.
pub fn loglog_plot(series: &[Series], x_label: &str, y_label: &str, width: usize, height: usize) -> Canvas {
    let mut canvas = Canvas::new(width, height, WHITE);
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| *x > 0.0 && *y > 0.0 && x.is_finite() && y.is_finite())
        .map(|(x, y)| (x.log10(), y.log10()))
        .collect();
    if pts.is_empty() {
        return canvas;
    }
    let (lx0, lx1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (ly0, ly1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    let (lx0, lx1) = (lx0.floor(), lx1.ceil().max(lx0.floor() + 1.0));
    let (ly0, ly1) = (ly0.floor(), ly1.ceil().max(ly0.floor() + 1.0));
    let (left, right, top, bottom) = (70.0, 20.0, 44.0, 50.0);
    let (wf, hf) = (width as f64 - left - right, height as f64 - top - bottom);
    let px = |lx: f64, ly: f64| {
        (
            left + (lx - lx0) / (lx1 - lx0) * wf,
            top + (ly1 - ly) / (ly1 - ly0) * hf,
        )
    };
    for d in (lx0 as i64)..=(lx1 as i64) {
        canvas.line(px(d as f64, ly0), px(d as f64, ly1), 1.0, GRID);
        let label = decade_label(d);
        let (x, y) = px(d as f64, ly0);
        let w = Canvas::text_width(&label, 2) as f64;
        canvas.text((x - w / 2.0) as i64, (y + 8.0) as i64, &label, 2, DARK);
    }
    for d in (ly0 as i64)..=(ly1 as i64) {
        canvas.line(px(lx0, d as f64), px(lx1, d as f64), 1.0, GRID);
        let label = decade_label(d);
        let (x, y) = px(lx0, d as f64);
        let w = Canvas::text_width(&label, 2) as f64;
        canvas.text((x - w - 6.0) as i64, (y - 5.0) as i64, &label, 2, DARK);
    }
    canvas.line(px(lx0, ly0), px(lx1, ly0), 1.5, DARK);
    canvas.line(px(lx0, ly0), px(lx0, ly1), 1.5, DARK);
    let xw = Canvas::text_width(x_label, 2) as f64;
    canvas.text(
        (left + wf / 2.0 - xw / 2.0) as i64,
        height as i64 - 18,
        x_label,
        2,
        DARK,
    );
    canvas.text(8, 12, y_label, 2, DARK);
    let mut lx = left as i64 + 160;
    for s in series {
        canvas.line((lx as f64, 17.0), (lx as f64 + 18.0, 17.0), 3.0, s.color);
        lx += 24 + canvas.text(lx + 24, 12, &s.label, 2, s.color) as i64 + 16;
        let p: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter(|(x, y)| *x > 0.0 && *y > 0.0)
            .map(|(x, y)| px(x.log10(), y.log10()))
            .collect();
        for w in p.windows(2) {
            canvas.line(w[0], w[1], 2.0, s.color);
        }
        for q in &p {
            canvas.disc(q.0, q.1, 3.5, s.color);
        }
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trips_through_the_decoder() {
        let mut c = Canvas::new(5, 3, WHITE);
        c.set(1, 2, [10, 20, 30]);
        let bytes = c.to_png().expect("encodes");
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut r = dec.read_info().expect("valid png");
        let mut buf = vec![0; r.output_buffer_size().expect("size")];
        let info = r.next_frame(&mut buf).expect("one frame");
        assert_eq!((info.width, info.height), (5, 3));
        assert_eq!(&buf[3 * (2 * 5 + 1)..3 * (2 * 5 + 1) + 3], &[10, 20, 30]);
    }

    #[test]
    fn image_grid_lays_out_and_rejects_bad_shapes() {
        let imgs = Tensor::from_fn(&[3, 1, 2, 2], |k| k as f64 / 12.0).expect("shape");
        let g = image_grid(&imgs, 2, 2).expect("valid grid");
        assert_eq!((g.width(), g.height()), (2 * 6 + 2, 2 * 6 + 2));
        assert_eq!(g.get(2, 2), Some([0, 0, 0]));
        assert!(image_grid(&Tensor::zeros(&[1, 2, 2, 2]).expect("shape"), 2, 2).is_err());
        assert!(image_grid(&imgs, 0, 2).is_err());
    }

    #[test]
    fn text_draws_known_glyphs_and_skips_unknown_ones() {
        let mut c = Canvas::new(20, 8, WHITE);
        let w = c.text(0, 0, "1~", 1, DARK);
        assert_eq!(w, 8);
        // '1' has its stem in the middle column of every row.
        assert!((0..5).all(|y| c.get(1, y) == Some(DARK)));
        assert!((4..8).all(|x| (0..5).all(|y| c.get(x, y) == Some(WHITE))));
        assert_eq!(decade_label(3), "1000");
        assert_eq!(decade_label(-6), "1E-6");
    }

    #[test]
    fn colormap_endpoints_and_nan() {
        assert_eq!(colormap(0.0), [68, 1, 84]);
        assert_eq!(colormap(1.0), [253, 231, 37]);
        assert_eq!(colormap(f64::NAN), colormap(0.0));
    }
}

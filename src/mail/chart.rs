//! The managers' chart: a small PNG line chart of a monthly rate, drawn with
//! plotters on its bitmap backend and encoded with `png`. It draws no text (plotters
//! would need a font stack for that): the email shows the same figures in a table
//! beside it, which is also what a screen reader reads.

use plotters::backend::RGBPixel;
use plotters::prelude::*;

use super::MailError;

/// Width and height in pixels: small enough for a phone, sharp enough for a desktop.
pub const SIZE: (u32, u32) = (560, 200);

const LINE: RGBColor = RGBColor(0x1f, 0x3a, 0x5f);
const GRID: RGBColor = RGBColor(0xd1, 0xd5, 0xdb);

/// A line through the months that have a rate (`None`: no referrals that month,
/// which breaks the line), over horizontal grid lines every 10 percentage points
/// (every 5 when the highest rate is under 20%). PNG bytes.
pub fn rate_chart(points: &[Option<f64>]) -> Result<Vec<u8>, MailError> {
    let (w, h) = SIZE;
    let fail = |e: String| MailError::Compose(format!("drawing the chart: {e}"));
    let mut buf = vec![0u8; (w as usize) * (h as usize) * 3];
    {
        let backend = BitMapBackend::<RGBPixel>::with_buffer_and_format(&mut buf, (w, h))
            .map_err(|e| fail(e.to_string()))?;
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
        let top = points.iter().flatten().fold(0.0f64, |a, &b| a.max(b));
        let step = if top < 0.2 { 0.05 } else { 0.1 };
        let ymax = ((top / step).floor() + 1.0) * step;
        let xmax = points.len().saturating_sub(1).max(1) as f64;
        let area = root.margin(12, 12, 12, 12);
        let mut chart = ChartBuilder::on(&area)
            .build_cartesian_2d(-0.3f64..xmax + 0.3, 0f64..ymax)
            .map_err(|e| fail(e.to_string()))?;
        let mut y = 0.0;
        while y <= ymax + 1e-9 {
            chart
                .draw_series(LineSeries::new(
                    vec![(-0.3, y), (xmax + 0.3, y)],
                    GRID.stroke_width(1),
                ))
                .map_err(|e| fail(e.to_string()))?;
            y += step;
        }
        // One run of the line per stretch of months with a rate.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for (i, p) in points.iter().enumerate() {
            match p {
                Some(v) => {
                    if let Some(run) = runs.last_mut() {
                        run.push((i as f64, *v));
                    }
                }
                None => runs.push(Vec::new()),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            chart
                .draw_series(LineSeries::new(run.clone(), LINE.stroke_width(3)))
                .map_err(|e| fail(e.to_string()))?;
            chart
                .draw_series(
                    run.iter()
                        .map(|&(x, y)| Circle::new((x, y), 4, LINE.filled())),
                )
                .map_err(|e| fail(e.to_string()))?;
        }
        root.present().map_err(|e| fail(e.to_string()))?;
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| fail(e.to_string()))?;
        writer
            .write_image_data(&buf)
            .map_err(|e| fail(e.to_string()))?;
        writer.finish().map_err(|e| fail(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_a_png_of_the_stated_size_with_the_line_drawn() {
        let png = rate_chart(&[Some(0.1), Some(0.2), None, Some(0.15), Some(0.3)]).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let mut reader = decoder.read_info().unwrap();
        let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut pixels).unwrap();
        assert_eq!((info.width, info.height), SIZE);
        // The line's colour is there, and most of the picture is white.
        let px: Vec<&[u8]> = pixels.chunks(3).collect();
        assert!(px.iter().any(|p| *p == [0x1f, 0x3a, 0x5f]));
        let white = px.iter().filter(|p| **p == [255, 255, 255]).count();
        assert!(white > px.len() / 2, "{white} of {}", px.len());
        assert!(png.len() < 20_000, "{} bytes", png.len());
    }

    #[test]
    fn no_rate_at_all_still_draws_the_grid() {
        let png = rate_chart(&[None; 12]).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
    }
}

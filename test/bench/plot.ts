import { createWriteStream, existsSync } from 'node:fs';
import * as PImage from 'pureimage';

/** A scatter plot of latency over time, one colour per series, written as PNG. */
export interface Series {
  label: string;
  points: { t: number; ms: number }[];
}

const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd'];

export async function writeLatencyPlot(file: string, series: Series[]): Promise<void> {
  const W = 900;
  const H = 500;
  const pad = { l: 70, r: 20, t: 40, b: 50 };
  const img = PImage.make(W, H);
  const ctx = img.getContext('2d');
  ctx.fillStyle = '#ffffff';
  ctx.fillRect(0, 0, W, H);
  const all = series.flatMap((s) => s.points);
  const maxT = Math.max(1, ...all.map((p) => p.t));
  const sorted = all.map((p) => p.ms).sort((a, b) => a - b);
  // Clip the y axis at the 99.9th percentile so one outlier does not flatten the plot.
  const maxMs = Math.max(1, sorted[Math.floor(sorted.length * 0.999)] ?? 1) * 1.1;
  const x = (t: number) => pad.l + (t / maxT) * (W - pad.l - pad.r);
  const y = (ms: number) => H - pad.b - (Math.min(ms, maxMs) / maxMs) * (H - pad.t - pad.b);
  ctx.strokeStyle = '#333333';
  ctx.beginPath();
  ctx.moveTo(pad.l, pad.t);
  ctx.lineTo(pad.l, H - pad.b);
  ctx.lineTo(W - pad.r, H - pad.b);
  ctx.stroke();
  series.forEach((s, i) => {
    ctx.fillStyle = COLOURS[i % COLOURS.length] ?? '#000000';
    for (const p of s.points) ctx.fillRect(x(p.t) - 1, y(p.ms) - 1, 3, 3);
  });
  if (existsSync(FONT)) {
    const font = PImage.registerFont(FONT, 'DejaVu');
    await font.load();
    ctx.fillStyle = '#000000';
    ctx.font = '14pt DejaVu';
    ctx.fillText('Approve-to-issued latency (ms) over time (s)', pad.l, 25);
    ctx.font = '11pt DejaVu';
    for (let k = 0; k <= 4; k++) {
      const ms = (maxMs * k) / 4;
      ctx.fillText(ms.toFixed(1), 10, y(ms) + 4);
      const t = (maxT * k) / 4;
      ctx.fillText(t.toFixed(0), x(t) - 5, H - pad.b + 20);
    }
    series.forEach((s, i) => {
      ctx.fillStyle = COLOURS[i % COLOURS.length] ?? '#000000';
      ctx.fillText(s.label, W - 260, pad.t + 20 + i * 18);
    });
  }
  await PImage.encodePNGToStream(img, createWriteStream(file));
}

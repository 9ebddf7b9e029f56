import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

// Served by the api under /ui; everything is bundled so the page makes no request to any other origin.
export default defineConfig({
  base: '/ui/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
});

// Vite (build + dev server) and Vitest configuration.
// Dev server: `npm run dev` proxies /api/ to a backend the same way nginx.conf does, so the
// dashboard runs unchanged against a local backend. V7_DEV_BACKEND (environment or .env file)
// sets where that backend is; default http://127.0.0.1:3000.
import { loadEnv } from 'vite';
import { defineConfig } from 'vitest/config';

export default defineConfig(({ mode }) => {
  const env = loadEnv(mode, '.', 'V7_');
  const backend = env.V7_DEV_BACKEND || 'http://127.0.0.1:3000';
  return {
    build: {
      outDir: 'dist',
      target: 'es2020',
      // Hashed file names under dist/assets/: nginx caches /assets/ for a year.
      assetsDir: 'assets',
    },
    server: {
      port: 5173,
      proxy: {
        // Same mapping as nginx.conf: /api/backend/{healthz,readyz} -> backend /{healthz,readyz},
        // every other /api/... path is passed unchanged.
        '^/api/backend/(healthz|readyz)$': {
          target: backend,
          changeOrigin: true,
          rewrite: (path: string) => path.replace(/^\/api\/backend/, ''),
        },
        '/api/': { target: backend, changeOrigin: true },
      },
    },
    test: {
      environment: 'node',
      include: ['test/**/*.test.ts'],
    },
  };
});

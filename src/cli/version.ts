/** The version of meshback (`meshback --version`, the API's /healthz). */
export const VERSION = '0.1.0';

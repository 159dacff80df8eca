/**
 * Talking to OCI and Docker registries: references, the registry client, authentication,
 * retries and redirects, and copying an image from a registry into a store.
 *
 * @module
 */
export {};

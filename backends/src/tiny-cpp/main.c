/* Example C++-style backend source for the LocalAI-shaped example (Dockerfile.cpp). */
int main(void) { return 0; }

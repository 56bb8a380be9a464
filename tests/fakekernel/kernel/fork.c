int kernel_clone(void)
{
	return 1;
}
